/* Divide-and-conquer dominance sums (docs/algorithms.md 3.3). Items 0..ns-1 are
 * the sources, ns..ns+nt-1 the targets. Ranking every coordinate by
 * (value, item) with a stable sort puts sources before targets at equal
 * values, so "key_s < key_t in every coordinate" is exactly "x_s <= x_t":
 * ties and duplicates come out right, self included.
 *
 * A call works on a set held as k lists (one per coordinate 0..k-1, each
 * sorted by that coordinate's key) and leaves them sorted when `restore` is
 * set, so the parent can build its cross set by merging and never re-sorts. */
#include "dominance.h"

#include <assert.h>
#include <string.h>

#define BRUTE_N 24 /* below this a set is finished pairwise */

size_t ink__dom_bytes(int d, size_t cap)
{
    size_t words = cap * (size_t)(2 * d + 2) + cap * (size_t)(d * (d - 1) / 2);
    return words * sizeof(int32_t) + cap * sizeof(double);
}

void ink__dom_init(struct ink__dom *D, int d, size_t cap, void *mem)
{
    memset(D, 0, sizeof *D);
    D->d = d;
    D->cap = cap;
    D->val = mem; /* doubles first: keeps them 8-aligned */
    D->key = (int32_t *)(D->val + cap);
    D->list = D->key + (size_t)d * cap;
    D->tmp = D->list + (size_t)d * cap;
    D->rank = D->tmp + cap;
    D->stk = D->rank + cap;
}

/* Stable bottom-up merge sort of item ids by val[id]. */
static void sort_ids(int32_t *a, int32_t *tmp, size_t n, const double *val)
{
    int32_t *src = a, *dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) dst[o++] = val[src[j]] < val[src[i]] ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

/* Stable partition of l[0, n) into key < v first, then the rest. */
static void partition(int32_t *l, size_t n, int32_t *tmp, const int32_t *key, int32_t v)
{
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t it = l[i];
        if (key[it] < v)
            l[lo++] = it;
        else
            tmp[hi++] = it;
    }
    memcpy(l + lo, tmp, hi * sizeof *l);
}

/* Merge the sorted runs l[0, h) and l[h, n) by key back into l. */
static void merge_back(int32_t *l, size_t h, size_t n, int32_t *tmp, const int32_t *key)
{
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) tmp[o++] = key[l[j]] < key[l[i]] ? l[j++] : l[i++];
    while (i < h) tmp[o++] = l[i++];
    memcpy(l, tmp, o * sizeof *l); /* the tail l[j, n) is already in place */
}

/* Cross set: the sources of l[0, h) and the targets of l[h, n), merged by key. */
static void merge_cross(int32_t *out, const int32_t *l, size_t h, size_t n, const int32_t *key,
                        int32_t ns)
{
    size_t i = 0, j = h, o = 0;
    for (;;) {
        while (i < h && l[i] >= ns) i++;
        while (j < n && l[j] < ns) j++;
        if (i >= h || j >= n) break;
        out[o++] = key[l[j]] < key[l[i]] ? l[j++] : l[i++];
    }
    for (; i < h; i++)
        if (l[i] < ns) out[o++] = l[i];
    for (; j < n; j++)
        if (l[j] >= ns) out[o++] = l[j];
}

static void add_target(struct ink__dom *D, int32_t t, double acc)
{
    D->F[t - (int32_t)D->ns] += acc;
}

static double weight(const struct ink__dom *D, int32_t s)
{
    return D->w ? D->w[s] : 1.0;
}

/* k = 1: one sweep in key order, a running sum of source weights. */
static void sweep(struct ink__dom *D, const int32_t *l, size_t n)
{
    int32_t ns = (int32_t)D->ns;
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (l[i] < ns)
            acc += weight(D, l[i]);
        else
            add_target(D, l[i], acc);
    }
}

/* Small sets: pairwise, scanning the sources before each target in key_0 order. */
static void brute(struct ink__dom *D, const int32_t *l, size_t n, int k)
{
    int32_t ns = (int32_t)D->ns;
    for (size_t i = 0; i < n; i++) {
        int32_t t = l[i];
        if (t < ns) continue;
        double acc = 0;
        for (size_t j = 0; j < i; j++) {
            int32_t s = l[j];
            if (s >= ns) continue;
            int c = 1;
            while (c < k && D->key[(size_t)c * D->cap + s] < D->key[(size_t)c * D->cap + t]) c++;
            if (c == k) acc += weight(D, s);
        }
        if (acc != 0) add_target(D, t, acc);
    }
}

/* k = 2: sweep in key_0 order with a Fenwick tree over the set's local key_1
 * ranks (from list 1): O(n log n) with a far smaller constant than two more
 * levels of recursion. val[] is free during the recursion and holds the tree. */
static void sweep2(struct ink__dom *D, const int32_t *l0, const int32_t *l1, size_t n)
{
    int32_t ns = (int32_t)D->ns, *rk = D->rank;
    double *T = D->val;
    for (size_t i = 0; i < n; i++) rk[l1[i]] = (int32_t)i;
    memset(T, 0, n * sizeof *T);
    for (size_t i = 0; i < n; i++) {
        int32_t it = l0[i];
        size_t j = (size_t)rk[it] + 1;
        if (it < ns) {
            double w = weight(D, it);
            for (; j <= n; j += j & -j) T[j - 1] += w;
        } else {
            double acc = 0;
            for (; j > 0; j -= j & -j) acc += T[j - 1];
            add_target(D, it, acc);
        }
    }
}

/* DOM(S u T, k): add to each target the weights of the sources with smaller
 * keys in coordinates 0..k-1 (docs/algorithms.md 3.3 steps 1-4). */
static void dom(struct ink__dom *D, int32_t *lists, size_t ld, size_t n, int k, int32_t *stk,
                int restore)
{
    int32_t ns = (int32_t)D->ns;
    size_t nsrc = 0;
    for (size_t i = 0; i < n; i++) nsrc += lists[i] < ns;
    if (nsrc == 0 || nsrc == n) return;
    if (k == 1) {
        sweep(D, lists, n);
        return;
    }
    if (n <= BRUTE_N) {
        brute(D, lists, n, k);
        return;
    }
    if (k == 2) {
        sweep2(D, lists, lists + ld, n);
        return;
    }
    int c = k - 1; /* split on the last coordinate at its median key */
    size_t h = n / 2;
    const int32_t *keyc = D->key + (size_t)c * D->cap;
    int32_t v = keyc[lists[(size_t)c * ld + h]];
    for (int cc = 0; cc < c; cc++) partition(lists + (size_t)cc * ld, n, D->tmp, keyc, v);
    dom(D, lists, ld, h, k, stk, 1);
    dom(D, lists + h, ld, n - h, k, stk, 1);
    size_t nsl = 0, nth = 0;
    for (size_t i = 0; i < h; i++) nsl += lists[i] < ns;
    for (size_t i = h; i < n; i++) nth += lists[i] >= ns;
    if (nsl && nth) {
        size_t nc = nsl + nth;
        for (int cc = 0; cc < c; cc++)
            merge_cross(stk + (size_t)cc * nc, lists + (size_t)cc * ld, h, n,
                        D->key + (size_t)cc * D->cap, ns);
        dom(D, stk, nc, nc, k - 1, stk + (size_t)c * nc, 0);
    }
    if (restore)
        for (int cc = 0; cc < c; cc++)
            merge_back(lists + (size_t)cc * ld, h, n, D->tmp, D->key + (size_t)cc * D->cap);
}

void ink__dom_run(struct ink__dom *D, const double *src, const double *w, size_t ns,
                  const double *tgt, size_t nt, double *F)
{
    size_t n = ns + nt;
    int d = D->d;
    assert(n <= D->cap); /* the caller sized the workspace */
    D->ns = ns;
    D->w = w;
    D->F = F;
    memset(F, 0, nt * sizeof *F);
    if (ns == 0 || nt == 0) return;
    for (int c = 0; c < d; c++) {
        int32_t *l = D->list + (size_t)c * n, *key = D->key + (size_t)c * D->cap;
        for (size_t i = 0; i < ns; i++) D->val[i] = src[i * d + c];
        for (size_t i = 0; i < nt; i++) D->val[ns + i] = tgt[i * d + c];
        for (size_t i = 0; i < n; i++) l[i] = (int32_t)i;
        sort_ids(l, D->tmp, n, D->val);
        for (size_t r = 0; r < n; r++) key[l[r]] = (int32_t)r;
    }
    dom(D, D->list, n, n, d, D->stk, 0);
}
