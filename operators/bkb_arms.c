/* bkb's arm set (docs/bkb.md): grid, random, named space (bkb_service.c)
 * or a CSV file. Arm files go through the engine's CSV cell reader
 * (engine/csv.c, ink_csv_numbers) with every column a coordinate, so
 * quoting and number syntax are those of CSV sources. */
#include "bkb_arms.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../engine/codec.h"
#include "../engine/rng.h"
#include "bkb_service.h"

/* Number of points per axis k of a grid. */
int64_t bkb_grid_n(const struct ink_bkb_grid_conf *g, int k)
{
    if (g->n.n == 0) return 1;
    double v = g->n.n == 1 ? g->n.v[0] : k < g->n.n ? g->n.v[k] : 1;
    return v >= 1 && v <= BKB_MAX_ARMS ? (int64_t)v : 1;
}

int bkb_arms_check(const struct ink_bkb_arms_conf *a, struct ink_err *err)
{
    int given = a->grid.set + (a->file != NULL) + a->random.set + (a->space != NULL);
    if (given != 1)
        return ink_err_set(err, INK_EINVAL,
                           "arms: give exactly one of grid, file, random, space (%d given)", given);
    if (a->space) {
        struct bkb_space *sp = malloc(sizeof *sp); /* config time */
        int rc = sp ? bkb_space_parse(a->space, sp, err) : ink_err_set(err, INK_ENOMEM, "arms");
        free(sp);
        if (rc) return rc;
    }
    if (a->grid.set) {
        const struct ink_bkb_grid_conf *g = &a->grid;
        if (g->lo.n != g->hi.n)
            return ink_err_set(err, INK_EINVAL, "arms.grid: lo has %d values, hi %d", g->lo.n,
                               g->hi.n);
        if (g->n.n != 1 && g->n.n != g->lo.n)
            return ink_err_set(err, INK_EINVAL, "arms.grid: n has %d values, expected 1 or %d",
                               g->n.n, g->lo.n);
        double total = 1;
        for (int k = 0; k < g->lo.n; k++) {
            double nk = g->n.n == 1 ? g->n.v[0] : g->n.v[k];
            if (nk < 1 || nk != floor(nk))
                return ink_err_set(err, INK_EINVAL, "arms.grid: n must be whole numbers >= 1");
            if (!(g->lo.v[k] <= g->hi.v[k]))
                return ink_err_set(err, INK_EINVAL, "arms.grid: lo[%d] = %g > hi[%d] = %g", k,
                                   g->lo.v[k], k, g->hi.v[k]);
            total *= nk;
        }
        if (total > BKB_MAX_ARMS)
            return ink_err_set(err, INK_EINVAL, "arms.grid: %.0f arms, more than %d", total,
                               BKB_MAX_ARMS);
    }
    if (a->random.set) {
        const struct ink_bkb_random_conf *r = &a->random;
        if (r->lo.n != r->hi.n)
            return ink_err_set(err, INK_EINVAL, "arms.random: lo has %d values, hi %d", r->lo.n,
                               r->hi.n);
        for (int k = 0; k < r->lo.n; k++)
            if (!(r->lo.v[k] <= r->hi.v[k]))
                return ink_err_set(err, INK_EINVAL, "arms.random: lo[%d] > hi[%d]", k, k);
        if (r->n < 1 || r->n > BKB_MAX_ARMS)
            return ink_err_set(err, INK_EINVAL, "arms.random: n must be in [1, %d]", BKB_MAX_ARMS);
    }
    return 0;
}

int bkb_arms_dims(const struct ink_bkb_arms_conf *a, int *A, int *d)
{
    if (a->grid.set) {
        double n = 1; /* bounded by check(); clamped for an unchecked conf */
        for (int k = 0; k < a->grid.lo.n; k++) n *= (double)bkb_grid_n(&a->grid, k);
        *A = n > BKB_MAX_ARMS ? BKB_MAX_ARMS : (int)n;
        *d = a->grid.lo.n;
        return 0;
    }
    if (a->random.set) {
        *A = (int)a->random.n;
        *d = a->random.lo.n;
        return 0;
    }
    if (a->space) {
        struct bkb_space *sp = malloc(sizeof *sp); /* config time */
        struct ink_err e = {0};
        int ok = sp && bkb_space_parse(a->space, sp, &e) == 0;
        *A = ok ? (int)sp->A : 1;
        *d = ok ? sp->d : 1;
        free(sp);
        return 0;
    }
    return -1; /* file: known after reading */
}

void bkb_arms_grid(const struct ink_bkb_grid_conf *g, double *X, int A, int d)
{
    for (int i = 0; i < A; i++) {
        int64_t r = i;
        for (int k = 0; k < d; k++) {
            int64_t nk = bkb_grid_n(g, k), ik = r % nk;
            r /= nk;
            double lo = g->lo.v[k], hi = g->hi.v[k];
            X[(size_t)i * d + k] = nk == 1 ? lo : lo + (hi - lo) * (double)ik / (double)(nk - 1);
        }
    }
}

void bkb_arms_random(const struct ink_bkb_random_conf *rc, double *X, int A, int d)
{
    struct ink_rng r;
    ink_rng_seed(&r, (uint64_t)rc->seed);
    for (size_t i = 0; i < (size_t)A * d; i++) {
        int k = (int)(i % (size_t)d);
        X[i] = rc->lo.v[k] + (rc->hi.v[k] - rc->lo.v[k]) * ink_rng_uniform(&r);
    }
}

/* Blank, or a '#' comment. */
static int blank_or_comment(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    return ink_line_blank(line + i, len - i) || (i < len && line[i] == '#');
}

/* Reads the arms file: pass 1 (X == NULL) counts rows and columns, pass 2 fills X. */
int bkb_arms_file(const char *path, double *X, int *A, int *d, int64_t max_arms, int64_t max_dim,
                  struct ink_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ink_err_set(err, INK_EIO, "arms.file: cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rows = 0, cols = X ? *d : -1, lineno = 0, rc = 0, first = 1;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (blank_or_comment(line, (size_t)len)) continue;
        if (X && rows == *A) break; /* the file grew since it was counted */
        int n = ink_csv_numbers(line, (size_t)len, X ? X + (size_t)rows * cols : NULL,
                                cols < 0 ? 0 : cols);
        if (n < 0 && first) { /* header row */
            first = 0;
            continue;
        }
        first = 0;
        if (n < 0) {
            rc = ink_err_set(err, INK_EPARSE, "arms.file: %s:%d: not a row of numbers", path,
                             lineno);
            break;
        }
        if (cols < 0) cols = n;
        if (n != cols) {
            rc = ink_err_set(err, INK_EPARSE, "arms.file: %s:%d: %d columns, expected %d", path,
                             lineno, n, cols);
            break;
        }
        if (cols > max_dim) {
            rc = ink_err_set(err, INK_EINVAL, "arms.file: %s: %d columns, more than max_dim %lld",
                             path, cols, (long long)max_dim);
            break;
        }
        if (++rows > max_arms) {
            rc = ink_err_set(err, INK_EINVAL, "arms.file: %s: more than max_arms %lld rows", path,
                             (long long)max_arms);
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc) return rc;
    if (rows == 0) return ink_err_set(err, INK_EINVAL, "arms.file: %s has no arms", path);
    *A = rows;
    *d = cols;
    return 0;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}
uint64_t bkb_arms_hash(int A, int d, const double *X)
{
    uint64_t h = hash_bytes(1469598103934665603ULL, &A, sizeof A);
    h = hash_bytes(h, &d, sizeof d);
    return hash_bytes(h, X, (size_t)A * d * sizeof(double));
}
