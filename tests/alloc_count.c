/* See alloc_count.h. */
#define _GNU_SOURCE
#include "alloc_count.h"

#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define INK_COUNT_ALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define INK_COUNT_ALLOC 0
#endif
#endif
#ifndef INK_COUNT_ALLOC
#define INK_COUNT_ALLOC 1
#endif

static volatile int counting;
static struct ink_alloc_counts counts;

/* Text ranges of the objects whose allocations are not ours. */
#define MAX_RANGES 64
static struct {
    uintptr_t lo, hi;
} ranges[MAX_RANGES];
static int nranges, ranges_read;

static bool excluded_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    /* liblapack.so, not liblapacke: LAPACKE's high-level calls allocate
     * their work arrays because the caller chose them, and that counts */
    static const char *const libs[] = {"libopenblas", "libblas.so",  "liblapack.so",
                                       "libgfortran", "libquadmath", NULL};
    for (int i = 0; libs[i]; i++)
        if (strncmp(base, libs[i], strlen(libs[i])) == 0) return true;
    return false;
}

static int add_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (!info->dlpi_name || !excluded_name(info->dlpi_name)) return 0;
    for (int i = 0; i < info->dlpi_phnum && nranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
        ranges[nranges].lo = lo;
        ranges[nranges].hi = lo + ph->p_memsz;
        nranges++;
    }
    return 0;
}

static bool ours(const void *caller)
{
    uintptr_t a = (uintptr_t)caller;
    for (int i = 0; i < nranges; i++)
        if (a >= ranges[i].lo && a < ranges[i].hi) return false;
    return true;
}

#if INK_COUNT_ALLOC
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static void note(size_t n, const void *caller)
{
    if (!counting) return;
    if (!ours(caller)) {
        counts.skipped++;
        return;
    }
    counts.calls++;
    counts.bytes += n;
    if (n > counts.largest) counts.largest = n;
}

void *malloc(size_t n)
{
    note(n, __builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    note(a * b, __builtin_return_address(0));
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    note(n, __builtin_return_address(0));
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t a, size_t n)
{
    note(n, __builtin_return_address(0));
    return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
    note(n, __builtin_return_address(0));
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#endif

bool ink_alloc_count_pause(void)
{
    bool was = counting;
    counting = 0;
    return was;
}

void ink_alloc_count_resume(bool was_on)
{
    counting = was_on;
}

bool ink_alloc_count_available(void)
{
    return INK_COUNT_ALLOC;
}

void ink_alloc_count_start(void)
{
    if (!ranges_read) { /* libraries are linked at start: their ranges do not move */
        dl_iterate_phdr(add_ranges, NULL);
        ranges_read = 1;
    }
    memset(&counts, 0, sizeof counts);
    counting = 1;
}

struct ink_alloc_counts ink_alloc_count_stop(void)
{
    counting = 0;
    return counts;
}

bool ink_alloc_counted_caller(const void *addr)
{
    if (!ranges_read) {
        dl_iterate_phdr(add_ranges, NULL);
        ranges_read = 1;
    }
    return ours(addr);
}

struct ink_alloc_counts ink_alloc_count_peek(void)
{
    return counts;
}
