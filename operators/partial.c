/* Mergeable partials: encoding and parsing (operators/partial.h,
 * docs/ecdf.md#global-answers-by-merging). */
#include "partial.h"

#include <string.h>

#define HDR 8 /* magic, version, kind, reserved */

size_t ink__partial_kll_bytes(uint32_t k)
{
    struct ink__kll probe;
    ink__kll_init(&probe, k, 0, NULL, false); /* only sizes: never touches items */
    return 5 + HDR + 4 + 4 + 8 + 8 + 8 + 4 + 4 * INK_KLL_MAX_LEVELS + 8 * (size_t)probe.cap;
}

size_t ink__partial_grid_bytes(int d, size_t nodes, size_t cells)
{
    return 5 + HDR + 4 + 4 * (size_t)d + 8 + 8 + 8 * nodes + 8 * cells;
}

static uint8_t *put_hdr(uint8_t *o, int kind)
{
    uint8_t h[HDR] = {'I', 'N', 'K', 'P', INK_PARTIAL_VERSION, (uint8_t)kind, 0, 0};
    return ink__put(o + 5, h, HDR);
}

uint8_t *ink__partial_begin(uint8_t *out, int kind)
{
    return put_hdr(out, kind);
}

static size_t close_bin(uint8_t *out, uint8_t *end);

size_t ink__partial_end(uint8_t *out, uint8_t *end)
{
    return close_bin(out, end);
}

void ink__partial_note(struct ink__partial_tag *t, const struct ink_record *in)
{
    int got = 0;
    int64_t part = 0, off = 0;
    for (uint32_t i = 0; i < in->nfields; i++) {
        const struct ink_field *f = &in->fields[i];
        if (f->v.type != INK_V_I64) continue;
        if (!strcmp(f->name, "kafka_partition")) part = f->v.i, got |= 1;
        if (!strcmp(f->name, "kafka_offset")) off = f->v.i, got |= 2;
    }
    if (got & 1) t->kpart = part;
    if (got & 2) t->koff = off;
    if (got == 3) t->has_kafka = true;
}

int ink__partial_emit(const struct ink_record *in, const uint8_t *bin, size_t len, const char *node,
                      uint64_t n, const struct ink__partial_tag *t, const struct ink_emitter *em)
{
    struct ink_record out;
    ink_record_derive_meta(&out, in);
    ink_record_add(&out, "partial",
                   (struct ink_value){.type = INK_V_RAW, .raw = {bin, (uint32_t)len}});
    ink_record_add_str(&out, "source", node, (uint32_t)strlen(node));
    ink_record_add_i64(&out, "n", (int64_t)n);
    if (t->has_kafka) {
        ink_record_add_i64(&out, "kafka_partition", t->kpart);
        ink_record_add_i64(&out, "kafka_offset", t->koff);
    }
    return ink_emit(em, &out);
}

static size_t close_bin(uint8_t *out, uint8_t *end)
{
    uint32_t len = (uint32_t)(end - out - 5);
    out[0] = 0xc6; /* bin 32, big-endian length */
    out[1] = (uint8_t)(len >> 24), out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8), out[4] = (uint8_t)len;
    return (size_t)(end - out);
}

size_t ink__partial_put_kll(uint8_t *out, const struct ink__kll *s)
{
    uint8_t *o = put_hdr(out, INK_PARTIAL_KLL);
    uint32_t k = s->k, nl = s->nlevels, mk = s->min_k;
    o = ink__put(o, &k, 4);
    o = ink__put(o, &nl, 4);
    o = ink__put(o, &s->n, 8);
    o = ink__put(o, &s->min, 8);
    o = ink__put(o, &s->max, 8);
    o = ink__put(o, &mk, 4);
    for (uint32_t h = 0; h < nl; h++) {
        uint32_t sz = s->levels[h + 1] - s->levels[h];
        o = ink__put(o, &sz, 4);
    }
    o = ink__put(o, s->items + s->levels[0], 8 * (size_t)(s->levels[nl] - s->levels[0]));
    return close_bin(out, o);
}

size_t ink__partial_put_grid(uint8_t *out, const struct ink__grid *g, const double *T, uint64_t n,
                             double wout)
{
    uint8_t *o = put_hdr(out, INK_PARTIAL_GRID);
    uint32_t d = (uint32_t)g->d;
    o = ink__put(o, &d, 4);
    o = ink__put(o, g->M, 4 * (size_t)d);
    o = ink__put(o, &n, 8);
    o = ink__put(o, &wout, 8);
    for (int a = 0; a < g->d; a++) o = ink__put(o, g->z[a], 8 * (size_t)g->M[a]);
    o = ink__put(o, T, 8 * g->size);
    return close_bin(out, o);
}

int ink__partial_parse(const uint8_t *p, size_t len, struct ink__partial *out, struct ink_err *err)
{
    size_t blen = 0, h = 0;
    if (len >= 2 && p[0] == 0xc4)
        blen = p[1], h = 2;
    else if (len >= 3 && p[0] == 0xc5)
        blen = (size_t)p[1] << 8 | p[2], h = 3;
    else if (len >= 5 && p[0] == 0xc6)
        blen = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4], h = 5;
    else
        return ink_err_set(err, INK_EINVAL, "partial: not a msgpack bin");
    if (blen != len - h) return ink_err_set(err, INK_EINVAL, "partial: truncated bin");
    struct ink__cur c = {p + h, p + len, false};
    const uint8_t *m = ink__take(&c, HDR);
    if (!m || memcmp(m, "INKP", 4) != 0)
        return ink_err_set(err, INK_EINVAL, "partial: not an inkflow partial (magic)");
    if (m[4] != INK_PARTIAL_VERSION)
        return ink_err_set(err, INK_EINVAL, "partial: version %u, this build reads %d", m[4],
                           INK_PARTIAL_VERSION);
    memset(out, 0, sizeof *out);
    out->kind = m[5];
    if (out->kind == INK_PARTIAL_KLL) {
        out->k = ink__take_u32(&c);
        out->nlevels = ink__take_u32(&c);
        out->n = ink__take_u64(&c);
        out->min = ink__take_f64(&c);
        out->max = ink__take_f64(&c);
        out->min_k = ink__take_u32(&c);
        if (c.bad || out->k < 8 || out->k > 65535 || out->nlevels < 1 ||
            out->nlevels > INK_KLL_MAX_LEVELS || out->min_k > out->k)
            return ink_err_set(err, INK_EINVAL, "partial: corrupt kll header");
        uint64_t tot = 0, cnt = 0;
        struct ink__kll probe;
        ink__kll_init(&probe, out->k, 0, NULL, false);
        uint64_t capn = 0;
        for (uint32_t l = 0; l < out->nlevels; l++) {
            out->size[l] = ink__take_u32(&c);
            if (out->size[l] > probe.cap) c.bad = true;
            cnt += out->size[l];
            tot += (uint64_t)out->size[l] << l;
            capn += probe.capd[l];
        }
        if (c.bad || cnt > capn || tot != out->n)
            return ink_err_set(err, INK_EINVAL, "partial: kll levels do not add up to n");
        out->R = (uint32_t)cnt;
        out->items = ink__take(&c, 8 * cnt);
        for (uint32_t i = 0; out->items && i < out->R; i++)
            if (ink__partial_f64(out->items, i) != ink__partial_f64(out->items, i)) c.bad = true;
    } else if (out->kind == INK_PARTIAL_GRID) {
        uint32_t d = ink__take_u32(&c);
        if (c.bad || d < 1 || d > INK_GRID_MAX_DIM)
            return ink_err_set(err, INK_EINVAL, "partial: corrupt grid header");
        out->d = (int)d;
        out->nn = 0, out->cells = 1;
        for (uint32_t a = 0; a < d; a++) {
            out->M[a] = ink__take_u32(&c);
            if (out->M[a] < 1 || out->M[a] > INK_GRID_MAX_NODES) c.bad = true;
            out->nn += out->M[a];
            if (!c.bad && out->cells > ((size_t)1 << 40) / out->M[a]) c.bad = true;
            if (!c.bad) out->cells *= out->M[a];
        }
        out->n = ink__take_u64(&c);
        out->wout = ink__take_f64(&c);
        if (!c.bad) out->nodes = ink__take(&c, 8 * out->nn);
        if (!c.bad) out->T = ink__take(&c, 8 * out->cells);
    } else if (out->kind == INK_PARTIAL_RLS) {
        out->body = c.p; /* parsed by ink__rls_partial_parse (operators/rls_merge.h) */
        out->body_len = (size_t)(c.end - c.p);
        c.p = c.end;
    } else {
        return ink_err_set(err, INK_EINVAL, "partial: unknown kind %d", out->kind);
    }
    if (c.bad || c.p != c.end)
        return ink_err_set(err, INK_EINVAL, "partial: %s", c.bad ? "truncated" : "trailing bytes");
    return 0;
}

void ink__partial_to_kll(const struct ink__partial *pt, struct ink__kll *s)
{
    uint32_t capn = 0;
    for (uint32_t l = 0; l < pt->nlevels; l++) capn += s->capd[l];
    uint32_t dst = s->cap - pt->R;
    memcpy(s->items + dst, pt->items, 8 * (size_t)pt->R);
    s->nlevels = pt->nlevels;
    s->base = s->cap - capn;
    s->levels[0] = dst;
    for (uint32_t l = 0; l < pt->nlevels; l++) s->levels[l + 1] = s->levels[l] + pt->size[l];
    s->n = pt->n;
    s->min_k = pt->min_k;
    s->min = pt->min;
    s->max = pt->max;
    s->l0_sorted = false;
    ink__kll_touch(s);
}
