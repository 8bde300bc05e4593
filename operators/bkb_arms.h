/* bkb's arm set: the coordinates it plays, built once at init from the
 * configuration (a grid, uniform random points, a named search space, or a
 * CSV file read with the engine's CSV reader). See docs/bkb.md. */
#ifndef INK_BKB_ARMS_H
#define INK_BKB_ARMS_H

#include <stdint.h>

#include "../engine/err.h"
#include "bkb.h"

#define BKB_MAX_ARMS 100000000

/* Number of points on axis k of a grid (1 for a bad value of an unchecked conf). */
int64_t bkb_grid_n(const struct ink_bkb_grid_conf *g, int k);

/* Checks the arms section: exactly one source, grid and random bounds, a
 * space that parses. 0 or INK_EINVAL (INK_ENOMEM) with err filled. */
int bkb_arms_check(const struct ink_bkb_arms_conf *a, struct ink_err *err);

/* A x d for a grid, random or space conf: 0. -1 for a file (known once read). */
int bkb_arms_dims(const struct ink_bkb_arms_conf *a, int *A, int *d);

/* X (A x d, row per arm) of a grid, axis 0 fastest. */
void bkb_arms_grid(const struct ink_bkb_grid_conf *g, double *X, int A, int d);
/* X of n uniform points in [lo, hi], from the conf's own seed. */
void bkb_arms_random(const struct ink_bkb_random_conf *rc, double *X, int A, int d);

/* Reads the arm file at path (one arm per row; blank lines and lines
 * starting with '#' skipped; a first row that is not all numbers is a
 * header). X == NULL: counts rows into *A and columns into *d; else fills
 * X with at most *A rows of *d columns. 0, or INK_EIO / INK_EPARSE /
 * INK_EINVAL with err naming the file and line. */
int bkb_arms_file(const char *path, double *X, int *A, int *d, int64_t max_arms, int64_t max_dim,
                  struct ink_err *err);

/* FNV-1a over A, d and X: identifies the arm set in snapshots. */
uint64_t bkb_arms_hash(int A, int d, const double *X);

#endif
