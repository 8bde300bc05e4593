/* libFuzzer target for the record-file reader (transports/file_io.h): the
 * CSV, JSON Lines and msgpack-stream readers behind the file source and
 * `inkflow send`, fed from a memfd so the real read/refill path runs. The
 * first byte picks the format. Every record the reader yields must encode
 * back to msgpack, and the reader must always make progress (bounded calls). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../engine/codec.h"
#include "../../transports/file_io.h"

static struct ink_buf out;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int formats[] = {INK_FMT_CSV, INK_FMT_JSONL, INK_FMT_MSGPACK};
    if (size < 1) return 0;
    int format = formats[data[0] % 3];
    data++, size--;
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct ink_limits lim = {
        .max_frame = 512, .max_depth = 8, .max_dim = 16, .max_str = 64, .max_extra = 256};
    struct ink_file_reader r;
    struct ink_err err = {0};
    if (ink_file_reader_open(&r, path, format, &lim, &err) == 0) {
        /* every call consumes at least one byte or ends the stream */
        for (size_t calls = 0; calls <= size + 2; calls++) {
            struct ink_record rec;
            enum ink_reject why = INK_REJ_NONE;
            const uint8_t *raw = NULL;
            size_t rawlen = 0;
            int rc = ink_file_reader_next(&r, &rec, &why, &raw, &rawlen);
            if (rc <= 0) break;
            if (rc == 1) {
                ink_buf_reset(&out);
                if (ink_encode_msgpack(&rec, INK_ENC_SEQ, &out)) abort();
            } else if (rc == 2) {
                if ((unsigned)why >= INK_REJ__COUNT || why == INK_REJ_NONE) abort();
                if (rawlen && !raw) abort();
            } else {
                abort();
            }
            if (calls == size + 2) abort(); /* no progress */
        }
        ink_file_reader_close(&r);
    }
    close(fd);
    return 0;
}
