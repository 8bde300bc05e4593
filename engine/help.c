/* `inkflow help`, `inkflow help TYPE` and `inkflow help --markdown`
 * (docs/config-reference.md), all from the parameter tables: the engine's,
 * and those of the node types in the registries. */
#include <stdio.h>
#include <string.h>

#include "config_impl.h"
#include "transport.h"

/* ------------------------------------------------------------------ */
/* Help and reference                                                  */

static const char *type_name(const struct ink_param *p)
{
    switch (p->type) {
    case INK_P_BOOL:
        return "bool";
    case INK_P_INT:
        return "int";
    case INK_P_DOUBLE:
        return "number";
    case INK_P_STRING:
        return "string";
    case INK_P_ENUM:
        return "enum";
    case INK_P_SIZE:
        return "size";
    case INK_P_DURATION:
        return "duration";
    case INK_P_F64_LIST:
        return "numbers";
    case INK_P_F64_LISTS:
        return "lists";
    case INK_P_OBJECT:
        return "object";
    case INK_P_FIELDS:
        return "fields";
    case INK_P_STRINGS:
        return "strings";
    case INK_P_STRMAP:
    case INK_P_JSON:
        return "map";
    }
    return "?";
}

/* Range, choices or list length, as one short string. */
static void constraint(char *buf, size_t n, const struct ink_param *p)
{
    buf[0] = 0;
    size_t off = 0;
    if (p->type == INK_P_ENUM && p->choices) {
        for (int i = 0; p->choices[i] && off < n; i++)
            off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? "|" : "", p->choices[i]);
        return;
    }
    bool numeric = p->type == INK_P_INT || p->type == INK_P_DOUBLE || p->type == INK_P_SIZE ||
                   p->type == INK_P_DURATION || p->type == INK_P_F64_LIST ||
                   p->type == INK_P_F64_LISTS;
    if (numeric && !(p->min == 0 && p->max == 0)) {
        char r[160];
        ink__param_range(r, sizeof r, p);
        off += (size_t)snprintf(buf, n, "%s", r);
    }
    if ((p->type == INK_P_F64_LIST || p->type == INK_P_F64_LISTS) && (p->len_min || p->len_max) &&
        off < n) {
        if (p->len_max)
            snprintf(buf + off, n - off, "%slength %d..%d", off ? "; " : "", p->len_min,
                     p->len_max);
        else
            snprintf(buf + off, n - off, "%slength >= %d", off ? "; " : "", p->len_min);
    }
}

static const char *def_text(const struct ink_param *p)
{
    if (p->flags & INK_PF_REQUIRED) return "(required)";
    if (!p->def) return "-";
    return p->def;
}

static void help_rows(const struct ink_param *t, int indent, FILE *out)
{
    for (int i = 0; t && t[i].name; i++) {
        const struct ink_param *p = &t[i];
        char c[400];
        constraint(c, sizeof c, p);
        fprintf(out, "  %*s%-*s %-9s %-14s %-22s %s\n", indent, "", 20 - indent, p->name,
                type_name(p), def_text(p), c, p->help ? p->help : "");
        if (p->type == INK_P_OBJECT) help_rows(p->sub, indent + 2, out);
    }
}

static void help_header(FILE *out)
{
    fprintf(out, "  %-20s %-9s %-14s %-22s %s\n", "KEY", "TYPE", "DEFAULT", "RANGE", "DESCRIPTION");
}

static const char *kind_word(enum ink_node_kind k)
{
    return k == INK_NODE_SOURCE ? "source" : k == INK_NODE_SINK ? "sink" : "operator";
}

/* Keys the loader itself handles for every node of a kind (not in a table). */
struct skey {
    const char *name, *type, *def, *help;
};

static const struct skey *structural_keys(enum ink_node_kind k)
{
    static const struct skey src[] = {
        {"type", "string", "(required)", NULL}, /* the registered types */
        {"dead_letter", "string", "-", "sink that receives records that fail decoding"},
        {0}};
    static const struct skey op[] = {
        {"type", "string", "(required)", "the operator type"},
        {"inputs", "names", "(required)",
         "sources/operators this node reads from (a list, or one name)"},
        {0}};
    static const struct skey snk[] = {
        {"type", "string", "(required)", NULL},
        {"inputs", "names", "(required)",
         "sources/operators this sink writes (a list, or one name); may be left out when the "
         "sink is only a dead_letter"},
        {0}};
    return k == INK_NODE_SOURCE ? src : k == INK_NODE_SINK ? snk : op;
}

void ink_params_help(const struct ink_node_type *nt, FILE *out)
{
    if (nt->params == ink_engine_params) {
        /* the engine section, wrapped in a node type by `inkflow help engine` */
        fprintf(out, "engine: %s\n\n", nt->summary ? nt->summary : "");
        help_header(out);
        help_rows(nt->params, 0, out);
        return;
    }
    fprintf(out, "%s (%s): %s\n\n", nt->name, kind_word(nt->kind), nt->summary ? nt->summary : "");
    help_header(out);
    for (const struct skey *k = structural_keys(nt->kind); k->name; k++) {
        char types[400];
        const char *help = k->help;
        if (!help) { /* `type` of a source or sink: the types of the registry */
            const struct ink_node_type *const *v =
                nt->kind == INK_NODE_SOURCE ? ink_source_types : ink_sink_types;
            size_t off =
                (size_t)snprintf(types, sizeof types, "the %s type (", kind_word(nt->kind));
            for (int i = 0; v[i] && off < sizeof types; i++)
                off += (size_t)snprintf(types + off, sizeof types - off, "%s%s", i ? ", " : "",
                                        v[i]->name);
            if (off < sizeof types) snprintf(types + off, sizeof types - off, ")");
            help = types;
        }
        fprintf(out, "  %-20s %-9s %-14s %-22s %s\n", k->name, k->type, k->def, "", help);
    }
    help_rows(nt->params, 0, out);
    if (nt->kind == INK_NODE_OPERATOR) {
        fprintf(out, "\n  Keys every operator accepts:\n");
        for (int i = 0; ink_op_common_params[i].name; i++) {
            /* a key the operator repeats is shown once, above */
            bool own = false;
            for (int j = 0; nt->params && nt->params[j].name; j++)
                own |= !strcmp(nt->params[j].name, ink_op_common_params[i].name);
            struct ink_param one[2] = {ink_op_common_params[i], {0}};
            if (!own) help_rows(one, 0, out);
        }
    }
}

static void list_kind(const char *title, const struct ink_node_type *const *types, FILE *out)
{
    fprintf(out, "%s:\n", title);
    for (int i = 0; types[i]; i++)
        fprintf(out, "  %-14s %s\n", types[i]->name, types[i]->summary ? types[i]->summary : "");
}

void ink_params_help_list(FILE *out)
{
    fprintf(out, "Usage: inkflow help TYPE   (keys of a source, operator or sink type)\n\n");
    list_kind("sources", ink_source_types, out);
    fprintf(out, "operators:\n");
    for (int i = 0; ink_operators[i]; i++)
        fprintf(out, "  %-14s %s\n", ink_operators[i]->name,
                ink_operators[i]->summary ? ink_operators[i]->summary : "");
    list_kind("sinks", ink_sink_types, out);
    fprintf(out, "\nengine: (all optional)\n");
    help_header(out);
    help_rows(ink_engine_params, 0, out);
}

/* Markdown escapes for table cells: '|' would end the cell. */
static void md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else
            fputc(*s, out);
    }
}

static void md_rows(const struct ink_param *t, const char *prefix, FILE *out)
{
    for (int i = 0; t && t[i].name; i++) {
        const struct ink_param *p = &t[i];
        char c[400], name[200];
        constraint(c, sizeof c, p);
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        fprintf(out, "| `%s` | %s | ", name, type_name(p));
        if (p->flags & INK_PF_REQUIRED)
            fputs("required", out);
        else if (p->def) {
            fputc('`', out);
            md_cell(out, p->def);
            fputc('`', out);
        }
        fputs(" | ", out);
        md_cell(out, c);
        fputs(" | ", out);
        md_cell(out, p->help);
        fputs(" |\n", out);
        if (p->type == INK_P_OBJECT) {
            char sub[220];
            snprintf(sub, sizeof sub, "%s.", name);
            md_rows(p->sub, sub, out);
        }
    }
}

static void md_table(const struct ink_param *t, FILE *out)
{
    fputs("| key | type | default | range | description |\n| --- | --- | --- | --- | --- |\n", out);
    md_rows(t, "", out);
}

static void md_type(const struct ink_node_type *nt, FILE *out)
{
    fprintf(out, "### `%s`\n\n%s.\n\n", nt->name, nt->summary ? nt->summary : "");
    if (nt->params && nt->params[0].name)
        md_table(nt->params, out);
    else
        fputs("No keys of its own.\n", out);
    fputc('\n', out);
}

void ink_params_markdown(FILE *out)
{
    fputs("# Configuration reference\n\n"
          "<!-- Generated by `inkflow help --markdown` from the parameter tables; do not edit. "
          "-->\n\n"
          "A config is one YAML file with four top-level keys: `engine` (optional), `sources`, "
          "`operators` and `sinks`, each a map from node name to the node's keys. Node names are "
          "unique across the three sections and use letters, digits, `_`, `-` and `.`. "
          "Every node has a `type`; operators and sinks have `inputs` (a list of source or "
          "operator names, or one name). A key set to `null` (or `~`, or left empty) takes its "
          "default.\n\n"
          "Value types:\n\n"
          "- **int**: a plain integer (`10`, `0x1f`, or an integral number such as `1e6`).\n"
          "- **number**: a finite plain number (`.inf` and `.nan` are refused).\n"
          "- **size**: bytes, either a plain integer or a number with a unit: `B`; `KiB`, "
          "`MiB`, `GiB`, `TiB` and the one-letter `K`, `M`, `G`, `T` are powers of 1024; "
          "`KB`, `MB`, `GB`, `TB` are powers of 1000. Units are case-insensitive; fractions "
          "round down to whole bytes (`1.5KiB` = 1536).\n"
          "- **duration**: seconds, either a plain number or numbers with units `ns`, `us`, "
          "`ms`, `s`, `m`, `h`, summed when chained (`1m30s` = 90). Units are lower-case.\n"
          "- **numbers**: a list of numbers; one number is a list of one.\n"
          "- **lists**: a list of lists of numbers.\n"
          "- **enum**: one of the listed words.\n"
          "- **object**: a nested map with its own keys.\n\n"
          "Numbers written in quotes are strings and are refused where a number is expected.\n\n"
          "`inkflow validate FILE` prints every problem as `FILE:LINE:COL: error: message` and "
          "exits 2.\n\n",
          out);
    fputs("## `engine`\n\n", out);
    md_table(ink_engine_params, out);
    fputs("\n## Sources\n\nEvery source also accepts `dead_letter` (the name of a sink that "
          "receives records that fail decoding). Sources have no `inputs`.\n\n",
          out);
    for (int i = 0; ink_source_types[i]; i++) md_type(ink_source_types[i], out);
    fputs("## Operators\n\nEvery operator has `inputs` and also accepts these keys:\n\n", out);
    md_table(ink_op_common_params, out);
    fputc('\n', out);
    for (int i = 0; ink_operators[i]; i++) md_type(&ink_operators[i]->type, out);
    fputs("## Sinks\n\nEvery sink has `inputs`.\n\n", out);
    for (int i = 0; ink_sink_types[i]; i++) md_type(ink_sink_types[i], out);
}
