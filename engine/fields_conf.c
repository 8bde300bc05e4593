/* `fields:` from the config's YAML into struct ink_fields_conf
 * (docs/fields.md); the param tables' INK_P_FIELDS type. */
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"
#include "fields.h"

static const char *ykind(const struct ink__ynode *n)
{
    return n->kind == INK__Y_MAP ? "a map" : n->kind == INK__Y_SEQ ? "a list" : "a scalar";
}

static bool name_ok(struct ink_diags *d, const char *path, const struct ink__ynode *n)
{
    if (n->kind != INK__Y_SCALAR) {
        ink__diag_add(d, n->line, n->col, "%s: expected a field name, got %s", path, ykind(n));
        return false;
    }
    size_t l = strlen(n->s);
    int segs = 1;
    bool ok = l > 0 && n->s[0] != '.' && n->s[l - 1] != '.' && !strstr(n->s, "..");
    for (size_t i = 0; i < l; i++) segs += n->s[i] == '.';
    if (!ok || segs > INK_FIELDS_MAX_DEPTH) {
        ink__diag_add(d, n->line, n->col,
                      "%s: '%s' is not a field name or a dotted path (payload.temp) of at most %d "
                      "names",
                      path, n->s, INK_FIELDS_MAX_DEPTH);
        return false;
    }
    return true;
}

static char *dup_name(struct ink_diags *d, const char *path, const struct ink__ynode *n)
{
    if (!name_ok(d, path, n)) return NULL;
    char *s = strdup(n->s);
    if (!s) ink__diag_add(d, n->line, n->col, "%s: out of memory", path);
    return s;
}

static bool parse_x(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                    struct ink_fields_conf *c)
{
    int cnt = n->kind == INK__Y_SEQ ? n->n : 1;
    if (n->kind == INK__Y_MAP || cnt == 0 || cnt > INK_FIELDS_MAX_X) {
        ink__diag_add(d, n->line, n->col, "%s: expected a name or a list of 1 to %d names, got %s",
                      path, INK_FIELDS_MAX_X, n->kind == INK__Y_MAP ? "a map" : "an empty list");
        return false;
    }
    c->x = calloc((size_t)cnt, sizeof *c->x);
    if (!c->x) return false;
    for (int i = 0; i < cnt; i++) {
        char ep[700];
        snprintf(ep, sizeof ep, "%s[%d]", path, i);
        const struct ink__ynode *e = n->kind == INK__Y_SEQ ? n->v[i] : n;
        c->x[i] = dup_name(d, n->kind == INK__Y_SEQ ? ep : path, e);
        if (!c->x[i]) return false;
        c->nx = i + 1;
    }
    return true;
}

static bool parse_key(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                      struct ink_fields_conf *c)
{
    if (n->kind != INK__Y_MAP) return (c->key = dup_name(d, path, n)) != NULL;
    if (n->n != 2 || n->v[0]->kind != INK__Y_SCALAR || n->v[1]->kind != INK__Y_SCALAR) {
        ink__diag_add(d, n->line, n->col,
                      "%s: expected a field name, {topic: true} or {topic_level: N}", path);
        return false;
    }
    const char *k = n->v[0]->s, *v = n->v[1]->s;
    if (!strcmp(k, "topic") && !strcmp(v, "true")) {
        c->key_topic_level = -1;
        return true;
    }
    char *e;
    long lvl = strtol(v, &e, 10);
    if (!strcmp(k, "topic_level") && *v && !*e && lvl >= 1 && lvl <= 64) {
        c->key_topic_level = (int)lvl;
        return true;
    }
    ink__diag_add(d, n->v[0]->line, n->v[0]->col,
                  "%s: expected {topic: true} (the whole topic) or {topic_level: N} (N from 1: "
                  "level 2 of site/3/temp is 3), got {%s: %s}",
                  path, k, v);
    return false;
}

static bool parse_t(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                    struct ink_fields_conf *c)
{
    if (n->kind != INK__Y_MAP) return (c->t = dup_name(d, path, n)) != NULL;
    bool ok = true;
    for (int i = 0; i + 1 < n->n; i += 2) {
        const struct ink__ynode *k = n->v[i], *v = n->v[i + 1];
        char kp[700];
        snprintf(kp, sizeof kp, "%s.%s", path, k->s ? k->s : "?");
        if (k->kind == INK__Y_SCALAR && !strcmp(k->s, "field")) {
            free(c->t);
            ok &= (c->t = dup_name(d, kp, v)) != NULL;
        } else if (k->kind == INK__Y_SCALAR && !strcmp(k->s, "format")) {
            int f = 0;
            while (ink_tfmt_names[f] &&
                   (v->kind != INK__Y_SCALAR || strcmp(ink_tfmt_names[f], v->s)))
                f++;
            if (!ink_tfmt_names[f]) {
                ink__diag_add(d, v->line, v->col,
                              "%s: expected one of auto, unix_s, unix_ms, unix_ns, rfc3339", kp);
                ok = false;
            } else {
                c->t_format = f;
            }
        } else {
            ink__diag_add(d, k->line, k->col, "%s: unknown key (valid keys: field, format)", kp);
            ok = false;
        }
    }
    if (ok && !c->t) {
        ink__diag_add(d, n->line, n->col, "%s: missing 'field' (the name of the time field)", path);
        ok = false;
    }
    return ok;
}

bool ink__fields_parse(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                       struct ink_fields_conf *c)
{
    ink_fields_conf_free(c);
    if (n->kind != INK__Y_MAP) {
        ink__diag_add(d, n->line, n->col,
                      "%s: expected a map such as {x: [temp, hum], key: station, t: ts}, got %s",
                      path, ykind(n));
        return false;
    }
    bool ok = true;
    for (int i = 0; i + 1 < n->n; i += 2) {
        const struct ink__ynode *k = n->v[i], *v = n->v[i + 1];
        if (k->kind != INK__Y_SCALAR) continue; /* reported by the tree builder */
        char kp[600];
        snprintf(kp, sizeof kp, "%s.%s", path, k->s);
        if (ink__ynull(v)) continue;
        if (!strcmp(k->s, "x")) {
            ok &= parse_x(d, kp, v, c);
        } else if (!strcmp(k->s, "y")) {
            ok &= (c->y = dup_name(d, kp, v)) != NULL;
        } else if (!strcmp(k->s, "key")) {
            ok &= parse_key(d, kp, v, c);
        } else if (!strcmp(k->s, "t")) {
            ok &= parse_t(d, kp, v, c);
        } else {
            static const char *const valid[] = {"x", "y", "key", "t"};
            const char *s = ink__suggest(k->s, valid, 4);
            if (s)
                ink__diag_add(d, k->line, k->col, "%s: unknown key (did you mean '%s'?)", kp, s);
            else
                ink__diag_add(d, k->line, k->col, "%s: unknown key (valid keys: x, y, key, t)", kp);
            ok = false;
        }
    }
    c->set = true;
    if (ok && !c->nx && !c->y && !c->key && !c->key_topic_level && !c->t) {
        ink__diag_add(d, n->line, n->col, "%s: maps nothing (give x, y, key or t)", path);
        ok = false;
    }
    return ok;
}
