/* rls_sketch's per-arrival passes (rls_linalg.h; docs/rls_sketch.md,
 * "Where the time goes"). Plain loops the compiler vectorises: element-wise
 * updates give the same bits at any vector width, and the one reduction
 * (ink_rls_dot) is written with 8 explicit lanes (vector extensions), so
 * no reassociation is needed to vectorise it. CMakeLists.txt compiles this file with
 * -ffp-contract=off (no FMA contraction) and the vectoriser on. */
#include "rls_linalg.h"

#include <math.h>
#include <stddef.h>

/* Eight lanes as two 4-double vectors (GCC/clang vector extensions: lane-wise
 * arithmetic whatever the instruction set). v4du: unaligned, may alias. */
typedef double v4d __attribute__((vector_size(32)));
typedef double v4du __attribute__((vector_size(32), aligned(8), may_alias));
#define LOAD4(p)     (*(const v4du *)(p))
#define STORE4(p, v) (*(v4du *)(p) = (v))

/* Each pass is built twice, for AVX2 and for the x86-64 baseline, and
 * chosen at run time (ink_rls_simd); both compute the same bits: no FMA
 * (-ffp-contract=off, and the avx2 target does not enable FMA), lane-wise
 * arithmetic only (tests/test_rls_sketch.c, linalg_simd_paths_same_bits).
 * The bodies are always_inline *_impl functions, so each wrapper gets its
 * own code. -DINK_RLS_NO_CLONES builds the baseline only. (target_clones
 * would do the same, but clang 14 cannot call a clone set from another
 * translation unit.) */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(INK_RLS_NO_CLONES)
#define AVX2_PATH 1
#endif
#define INLINE static inline __attribute__((always_inline))

INLINE double dot8(const double *a, const double *b, int n)
{
    v4d s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += LOAD4(a + i) * LOAD4(b + i);
        s1 += LOAD4(a + i + 4) * LOAD4(b + i + 4);
    }
    double r = ((s0[0] + s1[0]) + (s0[1] + s1[1])) + ((s0[2] + s1[2]) + (s0[3] + s1[3]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

INLINE double dot_impl(const double *a, const double *b, int n)
{
    return dot8(a, b, n);
}

INLINE void axpy(int n, double alpha, const double *x, double *y)
{
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Column j of a lower-stored symmetric matrix into y = A x: below the
 * diagonal it serves row j (a dot, 8 lanes as in dot8) and the rows below (an
 * axpy), in one read. */
INLINE void symv_col(int n, int j, const double *a, const double *x, double *y)
{
    double xj = x[j];
    v4d xv = {xj, xj, xj, xj}, s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    int i = j + 1;
    for (; i + 8 <= n; i += 8) {
        v4d a0 = LOAD4(a + i), a1 = LOAD4(a + i + 4);
        STORE4(y + i, LOAD4(y + i) + xv * a0);
        STORE4(y + i + 4, LOAD4(y + i + 4) + xv * a1);
        s0 += a0 * LOAD4(x + i);
        s1 += a1 * LOAD4(x + i + 4);
    }
    double t = ((s0[0] + s1[0]) + (s0[1] + s1[1])) + ((s0[2] + s1[2]) + (s0[3] + s1[3]));
    for (; i < n; i++) {
        y[i] += xj * a[i];
        t += a[i] * x[i];
    }
    y[j] += a[j] * xj + t;
}

INLINE void symv_lower_impl(int n, const double *A, int ld, const double *x, double *y)
{
    for (int i = 0; i < n; i++) y[i] = 0;
    for (int j = 0; j < n; j++) symv_col(n, j, A + (size_t)j * ld, x, y);
}

INLINE void trsv_lower_impl(int n, const double *L, int ld, double *v)
{
    for (int k = 0; k < n; k++) {
        const double *l = L + (size_t)k * ld;
        v[k] /= l[k];
        axpy(n - k - 1, -v[k], l + k + 1, v + k + 1);
    }
}

INLINE void trsv_upper_t_impl(int n, const double *R, int ld, double *z)
{
    for (int j = 0; j < n; j++) {
        const double *r = R + (size_t)j * ld;
        z[j] = (z[j] - dot8(r, z, j)) / r[j];
    }
}

INLINE double krr_step_impl(int n, double *F, int ld, double *z, double *acc, double *h, double y)
{
    double yhat = 0, ya = y;
    for (int i = 0; i < n; i++) acc[i] = z[i];
    for (int k = 0; k < n; k++) {
        double *f = F + (size_t)k * ld;
        double fkk = f[k], vk = acc[k] / fkk;
        yhat += vk * h[k];
        /* F_kk >= sqrt(mu) and |z_k| <= |z| stay far from overflow: no hypot. */
        double r = sqrt(fkk * fkk + z[k] * z[k]);
        double c = fkk / r, s = z[k] / r;
        f[k] = r;
        for (int i = k + 1; i < n; i++) {
            double a = f[i], b = z[i];
            acc[i] -= vk * a;     /* the solve with the old F ... */
            f[i] = c * a + s * b; /* ... and the rotation, in one read */
            z[i] = c * b - s * a;
        }
        double hk = c * h[k] + s * ya;
        ya = c * ya - s * h[k];
        h[k] = hk;
    }
    return yhat;
}

/* g[from..n) -= sum_p Z[., p] A[jb, p], four terms per pass over the column
 * (the one per-element formula of every low-rank update, pending or not). */
INLINE void lowrank_col(int from, int n, double *g, const double *Z, const double *A, int ldz,
                        int jb, int k)
{
    int p = 0;
    for (; p + 4 <= k; p += 4) {
        const double *z0 = Z + (size_t)p * ldz, *z1 = z0 + ldz, *z2 = z1 + ldz, *z3 = z2 + ldz;
        const double *a = A + (size_t)p * ldz + jb;
        double b0 = a[0], b1 = a[ldz], b2 = a[2 * (size_t)ldz], b3 = a[3 * (size_t)ldz];
        for (int i = from; i < n; i++)
            g[i] -= (z0[i] * b0 + z1[i] * b1) + (z2[i] * b2 + z3[i] * b3);
    }
    for (; p + 2 <= k; p += 2) {
        const double *z0 = Z + (size_t)p * ldz, *z1 = z0 + ldz;
        double b0 = A[jb + (size_t)p * ldz], b1 = A[jb + (size_t)(p + 1) * ldz];
        for (int i = from; i < n; i++) g[i] -= z0[i] * b0 + z1[i] * b1;
    }
    if (p < k) {
        const double *z0 = Z + (size_t)p * ldz;
        double b0 = A[jb + (size_t)p * ldz];
        for (int i = from; i < n; i++) g[i] -= z0[i] * b0;
    }
}

INLINE void lowrank_compact_impl(int n, double *G, int ld, const double *Z, const double *A,
                                 int ldz, int k, const int *keep, int nk)
{
    if (!keep) nk = n;
    for (int b = 0; b < nk; b++) {
        int jb = keep ? keep[b] : b;
        /* Column jb from the diagonal down, in place (evicted rows too:
         * contiguous is cheaper than skipping them) ... */
        double *g = G + (size_t)jb * ld;
        lowrank_col(jb, n, g, Z, A, ldz, jb, k);
        if (!keep) continue;
        /* ... then its kept rows to their places in column b. Destination
         * indices never exceed source ones, and column b's old contents were
         * read when it was the source (at an earlier or this b). */
        double *d = G + (size_t)b * ld;
        for (int a = b; a < nk; a++) d[a] = g[keep[a]];
    }
}

INLINE void symv_lower_pending_impl(int n, double *G, int ld, const double *Z, const double *A,
                                    int ldz, int k, const double *x, double *y)
{
    for (int i = 0; i < n; i++) y[i] = 0;
    for (int j = 0; j < n; j++) {
        double *a = G + (size_t)j * ld;
        lowrank_col(j, n, a, Z, A, ldz, j, k); /* the column leaves L1 updated ... */
        symv_col(n, j, a, x, y);               /* ... after serving the product */
    }
}

/* Rotations k0..kend-1 down one vector, the running element in a register. */
INLINE void rot_chain(double *x, int k0, int kend, const double *cs, const double *sn)
{
    if (k0 >= kend) return;
    double cur = x[k0];
    for (int k = k0; k < kend; k++) {
        double b = x[k + 1];
        x[k] = cs[k] * cur + sn[k] * b;
        cur = -sn[k] * cur + cs[k] * b;
    }
    x[kend] = cur;
}

void ink_rls_rot_chains(int nv, double *X, int ld, const int *k0, int kend, const double *cs,
                        const double *sn)
{
    int r = 0;
    for (; r + 4 <= nv; r += 4) {
        double *x0 = X + (size_t)r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        int ks = k0[r];
        for (int q = 1; q < 4; q++) ks = k0[r + q] > ks ? k0[r + q] : ks;
        if (ks >= kend) {
            for (int q = 0; q < 4; q++) rot_chain(x0 + (size_t)q * ld, k0[r + q], kend, cs, sn);
            continue;
        }
        /* Each vector up to the common start on its own, then four chains in
         * lockstep (four independent dependency chains in flight). */
        for (int q = 0; q < 4; q++) {
            double *x = x0 + (size_t)q * ld;
            for (int k = k0[r + q]; k < ks; k++) {
                double a = x[k], b = x[k + 1];
                x[k] = cs[k] * a + sn[k] * b;
                x[k + 1] = -sn[k] * a + cs[k] * b;
            }
        }
        double c0 = x0[ks], c1 = x1[ks], c2 = x2[ks], c3 = x3[ks];
        for (int k = ks; k < kend; k++) {
            double c = cs[k], s = sn[k];
            double b0 = x0[k + 1], b1 = x1[k + 1], b2 = x2[k + 1], b3 = x3[k + 1];
            x0[k] = c * c0 + s * b0;
            x1[k] = c * c1 + s * b1;
            x2[k] = c * c2 + s * b2;
            x3[k] = c * c3 + s * b3;
            c0 = -s * c0 + c * b0;
            c1 = -s * c1 + c * b1;
            c2 = -s * c2 + c * b2;
            c3 = -s * c3 + c * b3;
        }
        x0[kend] = c0, x1[kend] = c1, x2[kend] = c2, x3[kend] = c3;
    }
    for (; r < nv; r++) rot_chain(X + (size_t)r * ld, k0[r], kend, cs, sn);
}

INLINE void rot_pair_impl(int n, double *x, double *y, double c, double s)
{
    for (int i = 0; i < n; i++) {
        double a = x[i], b = y[i];
        x[i] = c * a + s * b;
        y[i] = -s * a + c * b;
    }
}

/* ------------------------------------------------------------ dispatch */

static int simd_avail(void)
{
#ifdef AVX2_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

/* Set once when the program loads (before any thread), changed only by
 * ink_rls_set_simd. */
static int simd_use;
__attribute__((constructor)) static void simd_init(void)
{
    simd_use = simd_avail();
}

int ink_rls_set_simd(int on)
{
    if (on < 0 || on > simd_avail()) return -1;
    simd_use = on;
    return 0;
}

#ifdef AVX2_PATH
#define AVX2_FN(ret, name, params, args)                                                           \
    __attribute__((target("avx2"))) static ret name##_avx2 params                                  \
    {                                                                                              \
        return name##_impl args;                                                                   \
    }
#define AVX2_VFN(name, params, args)                                                               \
    __attribute__((target("avx2"))) static void name##_avx2 params                                 \
    {                                                                                              \
        name##_impl args;                                                                          \
    }
#define PICK(name, args) (simd_use ? name##_avx2 args : name##_impl args)
#define VPICK(name, args)                                                                          \
    do {                                                                                           \
        if (simd_use)                                                                              \
            name##_avx2 args;                                                                      \
        else                                                                                       \
            name##_impl args;                                                                      \
    } while (0)
#else
#define AVX2_FN(ret, name, params, args)
#define AVX2_VFN(name, params, args)
#define PICK(name, args)  (name##_impl args)
#define VPICK(name, args) name##_impl args
#endif

#define PASS(ret, name, params, args)                                                              \
    AVX2_FN(ret, name, params, args)                                                               \
    ret ink_rls_##name params                                                                      \
    {                                                                                              \
        return PICK(name, args);                                                                   \
    }
#define VPASS(name, params, args)                                                                  \
    AVX2_VFN(name, params, args)                                                                   \
    void ink_rls_##name params                                                                     \
    {                                                                                              \
        VPICK(name, args);                                                                         \
    }

PASS(double, dot, (const double *a, const double *b, int n), (a, b, n))
VPASS(symv_lower, (int n, const double *A, int ld, const double *x, double *y), (n, A, ld, x, y))
VPASS(trsv_lower, (int n, const double *L, int ld, double *v), (n, L, ld, v))
VPASS(trsv_upper_t, (int n, const double *R, int ld, double *z), (n, R, ld, z))
PASS(double, krr_step, (int n, double *F, int ld, double *z, double *acc, double *h, double y),
     (n, F, ld, z, acc, h, y))
VPASS(lowrank_compact,
      (int n, double *G, int ld, const double *Z, const double *A, int ldz, int k, const int *keep,
       int nk),
      (n, G, ld, Z, A, ldz, k, keep, nk))
VPASS(symv_lower_pending,
      (int n, double *G, int ld, const double *Z, const double *A, int ldz, int k, const double *x,
       double *y),
      (n, G, ld, Z, A, ldz, k, x, y))
VPASS(rot_pair, (int n, double *x, double *y, double c, double s), (n, x, y, c, s))
