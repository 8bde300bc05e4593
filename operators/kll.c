/* KLL sketch (docs/algorithms.md 4.1), a port of the DataSketches compaction
 * scheme with fixed memory: the buffer is allocated once for
 * INK_KLL_MAX_LEVELS levels and the live part is its tail items[base, cap).
 * Adding a top level only lowers `base` (DataSketches reallocates and shifts). */
#include "kll.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define KLL_X86 1 /* SSE2 always; AVX2 when the CPU has it (checked at view init) */
#endif

#include "../engine/err.h"

#define SMALL_SORT 32 /* runs up to this length are insertion-sorted */
#define LINEAR_MAX 16 /* sorted levels up to this length are counted by a scan */

/* Capacity of a level at depth `depth` below the top: round(k (2/3)^depth)
 * in integers, (2k 2^depth / 3^depth + 1) / 2 (DataSketches int_cap_aux). */
static uint32_t cap_aux_aux(uint64_t k, uint32_t depth)
{
    uint64_t p3 = 1;
    for (uint32_t i = 0; i < depth; i++) p3 *= 3;
    uint64_t tmp = ((k << 1) << depth) / p3;
    return (uint32_t)((tmp + 1) >> 1);
}

static uint32_t cap_aux(uint32_t k, uint32_t depth)
{
    if (depth > 60) return 0; /* k (2/3)^60 < 1 for every allowed k */
    if (depth <= 30) return cap_aux_aux(k, depth);
    uint32_t half = depth / 2;
    return cap_aux_aux(cap_aux_aux(k, half), depth - half);
}

static uint32_t total_cap(const uint32_t *capd, uint32_t nlevels)
{
    uint32_t t = 0;
    for (uint32_t d = 0; d < nlevels; d++) t += capd[d];
    return t;
}

size_t ink__kll_bytes(uint32_t k, bool mergeable)
{
    uint32_t t = 0;
    for (uint32_t d = 0; d < INK_KLL_MAX_LEVELS; d++) {
        uint32_t c = cap_aux(k, d);
        t += c > INK_KLL_M ? c : INK_KLL_M;
    }
    return (size_t)t * (mergeable ? 3 : 1) * sizeof(double);
}

void ink__kll_init(struct ink__kll *s, uint32_t k, uint64_t seed, void *mem, bool mergeable)
{
    memset(s, 0, sizeof *s);
    s->k = s->min_k = k;
    s->m = INK_KLL_M;
    for (uint32_t d = 0; d < INK_KLL_MAX_LEVELS; d++) {
        uint32_t c = cap_aux(k, d);
        s->capd[d] = c > s->m ? c : s->m;
    }
    s->cap = total_cap(s->capd, INK_KLL_MAX_LEVELS);
    s->items = mem;
    s->work = mergeable ? s->items + s->cap : NULL;
    s->nlevels = 1;
    s->base = s->cap - s->capd[0];
    s->levels[0] = s->levels[1] = s->cap;
    s->min = INFINITY;
    s->max = -INFINITY;
    ink_rng_seed(&s->rng, seed);
    ink__kll_touch(s);
}

void ink__kll_touch(struct ink__kll *s)
{
    static uint64_t last_uid; /* the engine is single-threaded; atomic for the tests' sake */
    s->uid = __atomic_add_fetch(&last_uid, 1, __ATOMIC_RELAXED);
    s->dirty = ~0ull;
}

static uint32_t random_bit(struct ink__kll *s)
{
    if (s->nbits == 0) {
        s->bits = ink_rng_next(&s->rng);
        s->nbits = 64;
    }
    uint32_t b = (uint32_t)(s->bits & 1);
    s->bits >>= 1;
    s->nbits--;
    return b;
}

/* Small runs: insertion sort without branches. Inserting v into the sorted
 * a[0, i) gives b_k = max(a_{k-1}, min(a_k, v)) (b_0 = min(a_0, v), b_i =
 * max(a_{i-1}, v)), computed top-down with min/max instructions. On the
 * short level-0 runs of a compaction (8 to 30 items) this is about twice as
 * fast as a branching insertion sort, whose branches mispredict on random
 * data. */
static void small_sort(double *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double v = a[i], up = a[i - 1];
        a[i] = up > v ? up : v;
        for (size_t k = i - 1; k > 0; k--) {
            double lo = a[k - 1], m = up < v ? up : v;
            up = lo;
            a[k] = lo > m ? lo : m;
        }
        a[0] = up < v ? up : v;
    }
}

/* Quicksort with median-of-three (Hoare partition splits runs of equal
 * values evenly); recursion on the smaller side keeps the stack O(log n). */
static void sort_f64(double *a, size_t n)
{
    while (n > SMALL_SORT) {
        double x = a[0], y = a[n / 2], z = a[n - 1];
        double p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < p) i++;
            while (p < a[j]) j--;
            if (i >= j) break;
            double t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        size_t left = j + 1; /* a[0..j] <= p <= a[j+1..n) */
        if (left < n - left) {
            sort_f64(a, left);
            a += left;
            n -= left;
        } else {
            sort_f64(a + left, n - left);
            n = left;
        }
    }
    small_sort(a, n);
}

/* Merge buf[a, a+na) and buf[b, b+nb) (both sorted) into buf from c, where
 * c >= a + na - ... is arranged by the callers so that no unread item is
 * overwritten (DataSketches merge_sorted_arrays). */
static void merge_inplace(double *buf, uint32_t a, uint32_t na, uint32_t b, uint32_t nb, uint32_t c)
{
    uint32_t la = a + na, lb = b + nb;
    while (a < la && b < lb) buf[c++] = buf[b] < buf[a] ? buf[b++] : buf[a++];
    while (a < la) buf[c++] = buf[a++];
    while (b < lb) buf[c++] = buf[b++];
}

static void merge_into(double *out, const double *a, uint32_t na, const double *b, uint32_t nb)
{
    uint32_t i = 0, j = 0;
    while (i < na && j < nb) *out++ = b[j] < a[i] ? b[j++] : a[i++];
    while (i < na) *out++ = a[i++];
    while (j < nb) *out++ = b[j++];
}

/* Survivors at positions bit, bit+2, ... packed at the start of the run. */
static void halve_down(struct ink__kll *s, double *buf, uint32_t start, uint32_t len)
{
    uint32_t half = len / 2, j = start + random_bit(s);
    for (uint32_t i = start; i < start + half; i++, j += 2) buf[i] = buf[j];
}

/* The same, packed at the end of the run. */
static void halve_up(struct ink__kll *s, double *buf, uint32_t start, uint32_t len)
{
    uint32_t half = len / 2;
    uint32_t j = start + len - 1 - random_bit(s);
    for (uint32_t i = start + len; i-- > start + half; j -= 2) buf[i] = buf[j];
}

static uint32_t level_cap(const struct ink__kll *s, uint32_t nlevels, uint32_t h)
{
    return s->capd[nlevels - 1 - h];
}

/* The new top level costs capd[H] more slots: free space grows at the bottom. */
static void add_top_level(struct ink__kll *s)
{
    s->base -= s->capd[s->nlevels];
    s->levels[s->nlevels + 1] = s->levels[s->nlevels];
    s->nlevels++;
    s->dirty = ~0ull; /* every depth shifts: views regroup their levels */
}

static void compress_while_updating(struct ink__kll *s)
{
    uint32_t *L = s->levels, h = 0;
    while (L[h + 1] - L[h] < level_cap(s, s->nlevels, h)) h++;
    /* levels 0..h+1 change or move (those below h shift up) */
    s->dirty |= h + 2 >= 64 ? ~0ull : (1ull << (h + 2)) - 1;
    if (h == s->nlevels - 1) add_top_level(s);
    double *it = s->items;
    uint32_t raw_beg = L[h], raw_lim = L[h + 1];
    uint32_t pop_above = L[h + 2] - raw_lim, raw_pop = raw_lim - raw_beg;
    uint32_t odd = raw_pop & 1, adj_beg = raw_beg + odd, adj_pop = raw_pop - odd;
    uint32_t half = adj_pop / 2;
    if (h == 0 && !s->l0_sorted) sort_f64(it + adj_beg, adj_pop);
    if (pop_above == 0) {
        halve_up(s, it, adj_beg, adj_pop);
    } else {
        halve_down(s, it, adj_beg, adj_pop);
        merge_inplace(it, adj_beg, half, raw_lim, pop_above, adj_beg + half);
    }
    L[h + 1] -= half;
    if (odd) {
        L[h] = L[h + 1] - 1;
        if (L[h] != raw_beg) it[L[h]] = it[raw_beg];
    } else {
        L[h] = L[h + 1];
    }
    if (h > 0) { /* shift the levels below up into the freed slots */
        uint32_t amount = raw_beg - L[0];
        memmove(it + L[0] + half, it + L[0], amount * sizeof(double));
        for (uint32_t l = 0; l < h; l++) L[l] += half;
    }
}

void ink__kll_update(struct ink__kll *s, double x)
{
    if (x < s->min) s->min = x;
    if (x > s->max) s->max = x;
    if (s->levels[0] == s->base) compress_while_updating(s);
    s->items[--s->levels[0]] = x;
    s->n++;
    s->l0_sorted = false;
    s->dirty |= 1;
}

/* DataSketches general_compress on work[in[0], in[H]): compact, bottom-up,
 * every level that is over capacity while the whole is over capacity. */
static void general_compress(struct ink__kll *s, double *items, uint32_t *in, uint32_t *out,
                             uint32_t *nlevels_io, uint32_t *count_io, uint32_t *target_io)
{
    uint32_t nl = *nlevels_io, count = in[nl] - in[0], target = total_cap(s->capd, nl);
    out[0] = 0;
    for (uint32_t h = 0;; h++) {
        if (h == nl - 1) in[h + 2] = in[h + 1];
        uint32_t raw_beg = in[h], raw_lim = in[h + 1], raw_pop = raw_lim - raw_beg;
        if (count < target || raw_pop < level_cap(s, nl, h)) {
            if (raw_beg != out[h])
                memmove(items + out[h], items + raw_beg, raw_pop * sizeof(double));
            out[h + 1] = out[h] + raw_pop;
        } else {
            uint32_t pop_above = in[h + 2] - raw_lim;
            uint32_t odd = raw_pop & 1, adj_beg = raw_beg + odd, adj_pop = raw_pop - odd;
            uint32_t half = adj_pop / 2;
            if (odd) {
                items[out[h]] = items[raw_beg];
                out[h + 1] = out[h] + 1;
            } else {
                out[h + 1] = out[h];
            }
            if (h == 0 && !s->l0_sorted) sort_f64(items + adj_beg, adj_pop);
            if (pop_above == 0) {
                halve_up(s, items, adj_beg, adj_pop);
            } else {
                halve_down(s, items, adj_beg, adj_pop);
                merge_inplace(items, adj_beg, half, raw_lim, pop_above, adj_beg + half);
            }
            count -= half;
            in[h + 1] -= half;
            if (h == nl - 1 && nl < INK_KLL_MAX_LEVELS) {
                nl++;
                target += level_cap(s, nl, 0);
            }
        }
        if (h == nl - 1) break;
    }
    *nlevels_io = nl;
    *count_io = count;
    *target_io = target;
}

int ink__kll_merge(struct ink__kll *s, const struct ink__kll *o)
{
    if (o->n == 0) return 0;
    if (o->m != s->m || o->k != s->k || !s->work) return INK_EINVAL;
    uint64_t final_n = s->n + o->n;
    double omin = o->min, omax = o->max;
    for (uint32_t i = o->levels[0]; i < o->levels[1]; i++) ink__kll_update(s, o->items[i]);
    if (o->nlevels >= 2) {
        uint32_t in[INK_KLL_MAX_LEVELS + 2], out[INK_KLL_MAX_LEVELS + 2];
        uint32_t nl = s->nlevels > o->nlevels ? s->nlevels : o->nlevels;
        double *w = s->work;
        in[0] = 0;
        uint32_t p0 = s->levels[1] - s->levels[0];
        memcpy(w, s->items + s->levels[0], p0 * sizeof(double));
        in[1] = p0;
        for (uint32_t h = 1; h < nl; h++) {
            uint32_t sp = h < s->nlevels ? s->levels[h + 1] - s->levels[h] : 0;
            uint32_t op = h < o->nlevels ? o->levels[h + 1] - o->levels[h] : 0;
            merge_into(w + in[h], s->items + (sp ? s->levels[h] : 0), sp,
                       o->items + (op ? o->levels[h] : 0), op);
            in[h + 1] = in[h] + sp + op;
        }
        uint32_t count, target;
        general_compress(s, w, in, out, &nl, &count, &target);
        /* Fits: target <= cap because nl <= MAX_LEVELS. */
        uint32_t dst = s->cap - count;
        memcpy(s->items + dst, w + out[0], count * sizeof(double));
        s->base = s->cap - target;
        for (uint32_t h = 0; h <= nl; h++) s->levels[h] = out[h] - out[0] + dst;
        s->nlevels = nl;
    }
    s->n = final_n;
    s->dirty = ~0ull;
    if (omin < s->min) s->min = omin;
    if (omax > s->max) s->max = omax;
    if (o->min_k < s->min_k && o->nlevels > 1) s->min_k = o->min_k;
    return 0;
}

/* Number of items in the sorted run a[0, n) that are <= x (or < x): a
 * branch-free binary search (the comparisons are coin flips, so a
 * conditional move beats a mispredicted branch at every step). */
static inline __attribute__((always_inline)) uint32_t count_le(const double *a, uint32_t n,
                                                               double x, bool incl)
{
    if (n == 0) return 0;
    const double *base = a;
    while (n > 1) {
        uint32_t half = n / 2;
        base = (incl ? base[half] <= x : base[half] < x) ? base + half : base;
        n -= half;
    }
    return (uint32_t)(base - a) + (incl ? *base <= x : *base < x);
}

/* Weight of the retained items <= x (incl) or < x: level 0 is unsorted and
 * scanned, the others are searched. This is the operator's per-record cost. */
static inline __attribute__((always_inline)) uint64_t weight_cmp(const struct ink__kll *s, double x,
                                                                 bool incl)
{
    const uint32_t *L = s->levels;
    uint64_t w = 0;
    for (uint32_t i = L[0]; i < L[1]; i++) w += incl ? s->items[i] <= x : s->items[i] < x;
    for (uint32_t h = 1; h < s->nlevels; h++) {
        const double *a = s->items + L[h];
        uint32_t n = L[h + 1] - L[h], c = 0;
        if (n <= LINEAR_MAX) /* independent compares beat a chain of dependent loads */
            for (uint32_t i = 0; i < n; i++) c += incl ? a[i] <= x : a[i] < x;
        else
            c = count_le(a, n, x, incl);
        w += (uint64_t)c << h;
    }
    return w;
}

uint64_t ink__kll_weight_le(const struct ink__kll *s, double x)
{
    return weight_cmp(s, x, true);
}
uint64_t ink__kll_weight_lt(const struct ink__kll *s, double x)
{
    return weight_cmp(s, x, false);
}

double ink__kll_quantile(const struct ink__kll *s, double r)
{
    if (s->n == 0) return NAN;
    if (!(r >= 0)) r = 0;
    if (r > 1) r = 1;
    uint64_t want = (uint64_t)ceil(r * (double)s->n);
    const uint32_t *L = s->levels;
    double best = s->max; /* weight_le(max) = n >= want */
    /* weight_le is monotone in v: per sorted level, the first item reaching
     * `want`; level 0 is unsorted and checked item by item. */
    for (uint32_t i = L[0]; i < L[1]; i++)
        if (s->items[i] < best && ink__kll_weight_le(s, s->items[i]) >= want) best = s->items[i];
    for (uint32_t h = 1; h < s->nlevels; h++) {
        const double *a = s->items + L[h];
        uint32_t lo = 0, hi = L[h + 1] - L[h];
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (ink__kll_weight_le(s, a[mid]) >= want)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < L[h + 1] - L[h] && a[lo] < best) best = a[lo];
    }
    return best;
}

uint64_t ink__kll_total_weight(const struct ink__kll *s)
{
    uint64_t w = 0;
    for (uint32_t h = 0; h < s->nlevels; h++) w += (uint64_t)(s->levels[h + 1] - s->levels[h]) << h;
    return w;
}

uint32_t ink__kll_retained(const struct ink__kll *s)
{
    return s->levels[s->nlevels] - s->levels[0];
}

double ink__kll_eps(uint32_t k, bool pmf)
{
    return pmf ? 2.446 / pow(k, 0.9433) : 2.296 / pow(k, 0.9723);
}

/* ---- the query view (kll.h) ---- */

#if KLL_X86
static bool have_avx2;

__attribute__((target("avx2"))) static uint64_t low_weight_avx2(const double *a, const uint64_t *w,
                                                                uint32_t n, double x)
{
    __m256d xv = _mm256_set1_pd(x);
    __m256i acc = _mm256_setzero_si256();
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i m = _mm256_castpd_si256(_mm256_cmp_pd(_mm256_loadu_pd(a + i), xv, _CMP_LE_OQ));
        acc = _mm256_add_epi64(acc,
                               _mm256_and_si256(m, _mm256_loadu_si256((const __m256i *)(w + i))));
    }
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, acc);
    uint64_t t = r[0] + r[1] + r[2] + r[3];
    for (; i < n; i++) t += w[i] & -(uint64_t)(a[i] <= x);
    return t;
}

__attribute__((target("avx2"))) static uint32_t count_flat_avx2(const double *a, uint32_t n,
                                                                double x)
{
    __m256d xv = _mm256_set1_pd(x);
    __m256i acc = _mm256_setzero_si256();
    for (uint32_t i = 0; i < n; i += 4)
        acc = _mm256_sub_epi64(
            acc, _mm256_castpd_si256(_mm256_cmp_pd(_mm256_loadu_pd(a + i), xv, _CMP_LE_OQ)));
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, acc);
    return (uint32_t)(r[0] + r[1] + r[2] + r[3]);
}
#endif

/* Levels whose capacity is at most this are "low": scanned flat, not merged. */
#define VIEW_LOW_CAP 20
/* The merged run is searched in two flat passes: its fences (every
 * VIEW_BLOCK-th item), then one block. No chain of dependent loads. */
#define VIEW_BLOCK  16
#define VIEW_INFLOW 1

size_t ink__kll_view_bytes(uint32_t k)
{
    size_t cap = ink__kll_bytes(k, false) / sizeof(double);
    /* v (padded to a block), fences, cw (cap + 1), wt, tmp (2 cap), tag (2 cap bytes) */
    return 8 * (cap + VIEW_BLOCK) + 8 * (cap / VIEW_BLOCK + 4) + 8 * (cap + 1) + 8 * cap +
           16 * cap + ((2 * cap + 7) & ~(size_t)7);
}

void ink__kll_view_init(struct ink__kll_view *v, uint32_t k, void *mem)
{
    memset(v, 0, sizeof *v);
#if KLL_X86
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
    v->k = k;
    v->cap = (uint32_t)(ink__kll_bytes(k, false) / sizeof(double));
    while (v->depth < INK_KLL_MAX_LEVELS && cap_aux(k, v->depth) > VIEW_LOW_CAP) v->depth++;
    char *p = mem;
    v->v = (double *)p, p += 8 * ((size_t)v->cap + VIEW_BLOCK);
    v->fence = (double *)p, p += 8 * ((size_t)v->cap / VIEW_BLOCK + 4);
    v->cw = (uint64_t *)p, p += 8 * ((size_t)v->cap + 1);
    v->wt = (uint64_t *)p, p += 8 * (size_t)v->cap;
    v->tmp = (double *)p, p += 16 * (size_t)v->cap;
    v->tag = (uint8_t *)p;
    v->cw[0] = 0;
}

/* Merge levels [lo, H) into v->v with cumulative weights: level by level
 * upward (the levels grow with h, so the run is copied about twice). */
static void view_build_high(struct ink__kll_view *v, const struct ink__kll *s, uint32_t lo)
{
    double *a = v->tmp, *b = v->tmp + v->cap;
    uint8_t *ga = v->tag, *gb = v->tag + v->cap;
    uint32_t n = 0;
    for (uint32_t h = lo; h < s->nlevels; h++) {
        const double *q = s->items + s->levels[h];
        uint32_t m = s->levels[h + 1] - s->levels[h], i = 0, j = 0, o = 0;
        while (i < n && j < m) {
            if (q[j] < a[i]) {
                b[o] = q[j++];
                gb[o++] = (uint8_t)h;
            } else {
                b[o] = a[i];
                gb[o++] = ga[i++];
            }
        }
        for (; i < n; i++, o++) b[o] = a[i], gb[o] = ga[i];
        for (; j < m; j++, o++) b[o] = q[j], gb[o] = (uint8_t)h;
        n = o;
        double *t = a;
        a = b, b = t;
        uint8_t *tg = ga;
        ga = gb, gb = tg;
    }
    uint64_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        v->v[i] = a[i];
        c += 1ull << ga[i];
        v->cw[i + 1] = c;
    }
    v->nv = n;
    /* NaN pads the last block and the fences: NaN <= x is false */
    for (uint32_t i = n; i % VIEW_BLOCK; i++) v->v[i] = NAN;
    v->nf = (n + VIEW_BLOCK - 1) / VIEW_BLOCK;
    for (uint32_t j = 0; j < v->nf; j++) v->fence[j] = v->v[(size_t)j * VIEW_BLOCK];
    for (uint32_t j = v->nf; j % 4; j++) v->fence[j] = NAN;
}

/* The split for H levels. Flat: the levels of capacity <= VIEW_LOW_CAP at
 * the bottom (level 0 always: it is unsorted). Merged: from the lowest level
 * lo >= flat whose inflow is slow enough, i.e. level lo-1 compacts into it
 * about every cap(lo-1) 2^(lo-1) updates, at least VIEW_INFLOW times the
 * items a rebuild copies (about the total capacity): a rebuild then costs a
 * few ns per update at most. Levels in between (large k, or a young sketch)
 * are searched one by one. The constants were tuned on bench_ecdf's KLL row
 * (k = 200; 4 and 12 were ~5% slower). */
static void view_split(const struct ink__kll_view *v, const struct ink__kll *s, uint32_t *flat,
                       uint32_t *lo)
{
    uint32_t H = s->nlevels, f = H > v->depth ? H - v->depth : 1;
    if (f < 1) f = 1;
    uint64_t need = VIEW_INFLOW * (uint64_t)total_cap(s->capd, H);
    uint32_t h = f;
    while (h < H && (h - 1 >= 40 || ((uint64_t)level_cap(s, H, h - 1) << (h - 1)) < need)) h++;
    *flat = f;
    *lo = h;
}

static void view_sync(struct ink__kll_view *v, struct ink__kll *s)
{
    if (s->dirty == 1 && s->levels[0] <= v->l0) { /* new level-0 items only */
        for (uint32_t i = s->levels[0]; i < v->l0; i++) v->wt[i] = 1;
        v->l0 = s->levels[0];
        s->dirty = 0;
        return;
    }
    uint32_t H = s->nlevels, flat, lo;
    view_split(v, s, &flat, &lo);
    uint64_t d = s->dirty;
    if (H != v->nlevels || lo != v->lo || flat != v->flat) d = ~0ull;
    if (lo < 64 && (d >> lo)) view_build_high(v, s, lo);
    if (flat < 64) d &= (1ull << flat) - 1;
    while (d) {
        uint32_t h = (uint32_t)__builtin_ctzll(d);
        d &= d - 1;
        uint64_t w = 1ull << h;
        for (uint32_t i = s->levels[h]; i < s->levels[h + 1]; i++) v->wt[i] = w;
    }
    v->nlevels = H;
    v->l0 = s->levels[0];
    v->flat = flat;
    v->lo = lo;
    s->dirty = 0;
}

/* sum of w[i] over a[i] <= x: no branch on the data, two SSE2 lanes. */
static uint64_t low_weight(const double *a, const uint64_t *w, uint32_t n, double x)
{
    uint32_t i = 0;
    uint64_t t = 0;
#if KLL_X86
    if (have_avx2) return low_weight_avx2(a, w, n, x);
    __m128d xv = _mm_set1_pd(x);
    __m128i acc0 = _mm_setzero_si128(), acc1 = _mm_setzero_si128();
    for (; i + 4 <= n; i += 4) {
        __m128i m0 = _mm_castpd_si128(_mm_cmple_pd(_mm_loadu_pd(a + i), xv));
        __m128i m1 = _mm_castpd_si128(_mm_cmple_pd(_mm_loadu_pd(a + i + 2), xv));
        acc0 = _mm_add_epi64(acc0, _mm_and_si128(m0, _mm_loadu_si128((const __m128i *)(w + i))));
        acc1 =
            _mm_add_epi64(acc1, _mm_and_si128(m1, _mm_loadu_si128((const __m128i *)(w + i + 2))));
    }
    uint64_t r[2];
    _mm_storeu_si128((__m128i *)r, _mm_add_epi64(acc0, acc1));
    t = r[0] + r[1];
#endif
    for (; i < n; i++) t += w[i] & -(uint64_t)(a[i] <= x);
    return t;
}

/* Items of a[0, n) that are <= x, n a multiple of 4 (NaN padding is never
 * counted). */
static uint32_t count_flat(const double *a, uint32_t n, double x)
{
#if KLL_X86
    if (have_avx2) return count_flat_avx2(a, n, x);
    __m128d xv = _mm_set1_pd(x);
    __m128i acc0 = _mm_setzero_si128(), acc1 = _mm_setzero_si128();
    for (uint32_t i = 0; i < n; i += 4) {
        acc0 = _mm_sub_epi64(acc0, _mm_castpd_si128(_mm_cmple_pd(_mm_loadu_pd(a + i), xv)));
        acc1 = _mm_sub_epi64(acc1, _mm_castpd_si128(_mm_cmple_pd(_mm_loadu_pd(a + i + 2), xv)));
    }
    uint64_t r[2];
    _mm_storeu_si128((__m128i *)r, _mm_add_epi64(acc0, acc1));
    return (uint32_t)(r[0] + r[1]);
#else
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) c += a[i] <= x;
    return c;
#endif
}

/* Weight of the merged run's items <= x. */
static uint64_t high_weight(const struct ink__kll_view *v, double x)
{
    uint32_t nf4 = (v->nf + 3) & ~3u;
    uint32_t b = nf4 <= 64 ? count_flat(v->fence, nf4, x) : count_le(v->fence, v->nf, x, true);
    if (b == 0) return 0;
    uint32_t base = (b - 1) * VIEW_BLOCK;
    return v->cw[base + count_flat(v->v + base, VIEW_BLOCK, x)];
}

/* The answer of a view that follows s. */
static uint64_t view_query(struct ink__kll_view *v, struct ink__kll *s, double x)
{
    if (s->dirty) view_sync(v, s);
    const uint32_t *L = s->levels;
    uint64_t w = low_weight(s->items + L[0], v->wt + L[0], L[v->flat] - L[0], x);
    for (uint32_t h = v->flat; h < v->lo; h++)
        w += (uint64_t)count_le(s->items + L[h], L[h + 1] - L[h], x, true) << h;
    return w + high_weight(v, x);
}

/* ---- a pool of views (kll.h) ---- */

#define POOL_BUDGET (512 * 1024) /* bytes of views per pool, beyond the first */

uint32_t ink__kll_pool_views(uint32_t k)
{
    size_t n = POOL_BUDGET / ink__kll_view_bytes(k);
    return n < 1 ? 1 : n > INK_KLL_POOL_MAX ? INK_KLL_POOL_MAX : (uint32_t)n;
}

size_t ink__kll_pool_bytes(uint32_t k)
{
    return ink__kll_pool_views(k) * ink__kll_view_bytes(k);
}

void ink__kll_pool_init(struct ink__kll_pool *p, uint32_t k, void *mem)
{
    memset(p, 0, sizeof *p);
    p->n = ink__kll_pool_views(k);
    for (uint32_t i = 0; i < p->n; i++)
        ink__kll_view_init(&p->v[i], k, (char *)mem + i * ink__kll_view_bytes(k));
}

/* Count one more query of s among the candidates; its count. */
static uint32_t pool_candidate(struct ink__kll_pool *p, uint64_t uid)
{
    uint32_t nc = 2 * p->n, least = 0;
    for (uint32_t i = 0; i < nc; i++) {
        if (p->cand[i].uid == uid) return ++p->cand[i].count;
        if (p->cand[i].count < p->cand[least].count) least = i;
    }
    p->cand[least].uid = uid;
    p->cand[least].count = 1;
    return 1;
}

uint64_t ink__kll_pool_weight_le(struct ink__kll_pool *p, struct ink__kll *s, double x)
{
    p->tick++;
    for (uint32_t i = 0; i < p->n; i++)
        if (p->v[i].uid == s->uid) {
            p->last[i] = p->tick;
            return view_query(&p->v[i], s, x);
        }
    if (pool_candidate(p, s->uid) < INK_KLL_VIEW_ADOPT) return weight_cmp(s, x, true);
    /* adopt: a free view, else the one idle longest if idle long enough */
    uint32_t best = p->n;
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->v[i].uid == 0) {
            best = i;
            break;
        }
        if (p->tick - p->last[i] > INK_KLL_POOL_IDLE &&
            (best == p->n || p->last[i] < p->last[best]))
            best = i;
    }
    if (best == p->n) return weight_cmp(s, x, true);
    for (uint32_t i = 0; i < 2 * p->n; i++)
        if (p->cand[i].uid == s->uid) p->cand[i].count = 0, p->cand[i].uid = 0;
    p->v[best].uid = s->uid;
    p->last[best] = p->tick;
    p->adoptions++;
    s->dirty = ~0ull;
    return view_query(&p->v[best], s, x);
}

/* First index of the sorted a[0, n) whose weight through the view reaches
 * want (n when none). */
static uint32_t first_reaching(struct ink__kll_view *v, struct ink__kll *s, const double *a,
                               uint32_t n, uint64_t want)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (view_query(v, s, a[mid]) >= want)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double ink__kll_pool_quantile(struct ink__kll_pool *p, struct ink__kll *s, double r)
{
    struct ink__kll_view *v = NULL;
    for (uint32_t i = 0; i < p->n && !v; i++)
        if (p->v[i].uid == s->uid) v = &p->v[i];
    if (!v || s->n == 0) return ink__kll_quantile(s, r);
    if (!(r >= 0)) r = 0;
    if (r > 1) r = 1;
    uint64_t want = (uint64_t)ceil(r * (double)s->n);
    if (s->dirty) view_sync(v, s);
    const uint32_t *L = s->levels;
    double best = s->max, below = -INFINITY;
    /* the sorted runs: the view's merged high levels, then each searched level */
    for (uint32_t h = v->flat; h <= v->lo; h++) {
        const double *a = h == v->lo ? v->v : s->items + L[h];
        uint32_t n = h == v->lo ? v->nv : L[h + 1] - L[h];
        uint32_t i = first_reaching(v, s, a, n, want);
        if (i < n && a[i] < best) best = a[i];
        if (i > 0 && a[i - 1] > below) below = a[i - 1];
    }
    /* the flat levels (level 0 unsorted): only items strictly between an item
     * that falls short and the best so far can be the answer */
    for (uint32_t i = L[0]; i < L[v->flat]; i++) {
        double x = s->items[i];
        if (x > below && x < best && view_query(v, s, x) >= want) best = x;
    }
    return best;
}
