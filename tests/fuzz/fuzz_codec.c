/* libFuzzer target for the record decoders (engine/codec.h). Not built by
 * default; with clang:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_codec.c \
 *     engine/codec.c engine/jsonl.c engine/csv.c engine/record.c engine/err.c \
 *     -lmsgpackc -ljansson -lm -o fuzz_codec && ./fuzz_codec -max_total_time=60
 * The first byte picks the decoder (msgpack, JSON, CSV with the first line as
 * the header), plain or with a `fields:` mapping (engine/fields.h: dotted
 * paths, a key from topic level 2, t in auto format). A decoded record must encode in every format,
 * and its msgpack must decode again to the same known fields; the request-argument readers
 * (ink_record_extra_*) run over its extras. */
#include <stdlib.h>
#include <string.h>

#include "../../engine/codec.h"
#include "../../engine/fields.h"

static struct ink_decoder dec, dec2, decm;
static struct ink_buf out;

static void check_same(const struct ink_record *a, const struct ink_record *b)
{
    if ((b->flags & ~(uint32_t)INK_HAS_SEQ) != (a->flags & ~(uint32_t)INK_HAS_SEQ)) abort();
    if (a->dim != b->dim || (a->dim && memcmp(a->x, b->x, a->dim * sizeof(double)))) abort();
    if (a->key_len != b->key_len || (a->key_len && memcmp(a->key, b->key, a->key_len))) abort();
    if (a->extra_n != b->extra_n || a->extra_len != b->extra_len) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dec.x) {
        struct ink_limits lim = {
            .max_frame = 4096, .max_depth = 12, .max_dim = 64, .max_str = 64, .max_extra = 1024};
        if (ink_decoder_init(&dec, &lim) || ink_decoder_init(&dec2, &lim) ||
            ink_decoder_init(&decm, &lim))
            abort();
        static char *x[] = {"a", "p.q"};
        struct ink_fields_conf fc = {.set = true,
                                     .nx = 2,
                                     .x = x,
                                     .y = "y",
                                     .t = "ts",
                                     .key_topic_level = 2,
                                     .t_format = INK_TF_AUTO};
        struct ink_err e;
        if (ink_decoder_set_fields(&decm, &fc, &e)) abort();
    }
    if (size < 1) return 0;
    uint8_t mode = data[0] % 6;
    struct ink_decoder *d = &dec;
    if (mode >= 3) {
        d = &decm;
        mode -= 3;
        ink_decoder_set_topic(d, "site/3/temp", 11);
    }
    data++, size--;
    /* an exact-size copy so any over-read is caught */
    uint8_t *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    struct ink_record r, r2;
    enum ink_reject why = INK_REJ_DECODE;
    struct ink_csv_header h = {0};
    if (mode == 0) {
        why = ink_decode_msgpack(d, in, size, &r);
    } else if (mode == 1) {
        why = ink_decode_json(d, (const char *)in, size, &r);
    } else {
        const char *nl = memchr(in, '\n', size);
        size_t hl = nl ? (size_t)(nl - (const char *)in) + 1 : size;
        struct ink_err err;
        if (ink_csv_header_parse(&h, (const char *)in, hl, &err) == 0)
            why = ink_decode_csv(d, &h, (const char *)in + hl, size - hl, &r);
    }
    if ((unsigned)why >= INK_REJ__COUNT) abort();
    if (why == INK_REJ_NONE) {
        ink_buf_reset(&out);
        if (ink_encode_msgpack(&r, INK_ENC_SEQ, &out)) abort();
        enum ink_reject w2 = ink_decode_msgpack(&dec2, out.p, out.len, &r2);
        if (w2 == INK_REJ_NONE)
            check_same(&r, &r2);
        else if (w2 != INK_REJ_TOO_LARGE)
            abort();
        ink_buf_reset(&out);
        if (ink_encode_json(&r, 0, &out) || ink_encode_text(&r, 0, &out)) abort();
        struct ink_csv_layout lay;
        if (ink_encode_csv_header(&lay, &r, 0, &out) || ink_encode_csv(&lay, &r, &out)) abort();
        /* request arguments are read from the extras of untrusted records */
        static double buf[64 * 4];
        uint32_t rows = 0, n = 0;
        int64_t i64;
        double f64;
        const char *sp;
        if (ink_record_extra_f64m(&r, "points", buf, 64, 4, &rows) == 1 && rows > 64) abort();
        if (ink_record_extra_f64s(&r, "x", buf, 64, &n) == 1 && n > 64) abort();
        (void)ink_record_extra_i64(&r, "n", &i64);
        (void)ink_record_extra_f64(&r, "r", &f64);
        (void)ink_record_extra_str(&r, "key", &sp, &n);
    }
    ink_csv_header_fini(&h);
    free(in);
    return 0;
}
