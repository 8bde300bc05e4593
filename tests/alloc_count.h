/* Allocation counting for the unit tests: one mechanism for all of them.
 *
 * Linking tests/alloc_count.c into a test executable interposes malloc,
 * calloc, realloc, aligned_alloc and posix_memalign for the whole process. While counting is on, a
 * call is counted unless its caller (the return address of the malloc call) lies inside the
 * BLAS/LAPACK libraries: OpenBLAS picks its kernels per CPU at run time and some of them allocate
 * (0.3.21's dgemm_small_kernel_b0_nn_COOPERLAKE calls malloc on AVX-512 BF16 machines), which is a
 * property of the library build, not of inkflow's code. Calls from the executable, libc (strdup on
 * our behalf), msgpack-c, jansson, LAPACKE's allocating wrappers and the rest all count.
 *
 * The libraries' address ranges are read once with dl_iterate_phdr when
 * counting starts, outside malloc; inside malloc only a range compare runs.
 *
 * Under AddressSanitizer, which owns malloc, nothing is interposed:
 * ink_alloc_count_available() is false and the tests skip their checks,
 * saying so. */
#ifndef INK_ALLOC_COUNT_H
#define INK_ALLOC_COUNT_H

#include <stdbool.h>
#include <stddef.h>

struct ink_alloc_counts {
    size_t calls;   /* malloc + calloc + realloc calls counted */
    size_t bytes;   /* bytes requested by them */
    size_t largest; /* largest single request */
    size_t skipped; /* calls made from inside BLAS/LAPACK, not counted */
};

bool ink_alloc_count_available(void);
void ink_alloc_count_start(void);                   /* zero the counts, count from now */
struct ink_alloc_counts ink_alloc_count_stop(void); /* stop counting, return the counts */
struct ink_alloc_counts ink_alloc_count_peek(void); /* the counts so far, still counting */
/* Stop counting for a while (a test harness's own work); returns whether
 * counting was on, for resume. */
bool ink_alloc_count_pause(void);
void ink_alloc_count_resume(bool was_on);
/* Whether a call to malloc from code at addr would be counted (false for
 * code inside BLAS/LAPACK): lets a test check the exclusion itself. */
bool ink_alloc_counted_caller(const void *addr);

#endif
