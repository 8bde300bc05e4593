/* Diagnostics of the config loader (config.h, config_impl.h): collected,
 * printed as FILE:LINE:COL: error: message, and the "did you mean"
 * suggestion by edit distance. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"

void ink__diag_add(struct ink_diags *d, int line, int col, const char *fmt, ...)
{
    if (d->n >= INK__DIAGS_MAX) return;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 16;
        struct ink_diag *v = realloc(d->v, (size_t)cap * sizeof *v);
        if (!v) return;
        d->v = v;
        d->cap = cap;
    }
    struct ink_diag *g = &d->v[d->n++];
    g->line = line;
    g->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
}

void ink_diags_print(const struct ink_diags *d, const char *path, FILE *out)
{
    for (int i = 0; i < d->n; i++) {
        if (d->v[i].line > 0)
            fprintf(out, "%s:%d:%d: error: %s\n", path, d->v[i].line, d->v[i].col, d->v[i].msg);
        else
            fprintf(out, "%s: error: %s\n", path, d->v[i].msg);
    }
}

void ink_diags_free(struct ink_diags *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------ */
/* Suggestions                                                         */

/* Optimal string alignment distance (adjacent transpositions count 1). */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int dp[65][65];
    for (size_t i = 0; i <= la; i++) dp[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) dp[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = dp[i - 1][j] + 1;
            if (dp[i][j - 1] + 1 < v) v = dp[i][j - 1] + 1;
            if (dp[i - 1][j - 1] + cost < v) v = dp[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                dp[i - 2][j - 2] + 1 < v)
                v = dp[i - 2][j - 2] + 1;
            dp[i][j] = v;
        }
    return dp[la][lb];
}

const char *ink__suggest(const char *word, const char *const *cands, int ncands)
{
    const char *best = NULL;
    int bestd = 1000;
    size_t lw = strlen(word);
    for (int i = 0; i < ncands; i++) {
        int dist = edit_distance(word, cands[i]);
        if (dist < bestd) bestd = dist, best = cands[i];
    }
    /* close = at most a third of the word wrong (at least one edit, at most 3) */
    int limit = (int)(lw / 3);
    if (limit < 1) limit = 1;
    if (limit > 3) limit = 3;
    return bestd <= limit && (size_t)bestd < lw ? best : NULL;
}
