/* Helpers shared by the subcommands: usage errors and checked option values.
 * Both tools/inkflow.c and tools/netcmd.c use these; neither depends on the
 * other. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int ink_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "inkflow: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

int ink_opt_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno == ERANGE)
        return ink_usage("%s: --%s needs an integer, not '%s'", cmd, opt, s);
    if (v < lo || v > hi)
        return ink_usage("%s: --%s %ld is out of range [%ld, %ld]", cmd, opt, v, lo, hi);
    *out = v;
    return 0;
}

int ink_opt_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                   double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return ink_usage("%s: --%s needs a number, not '%s'", cmd, opt, s);
    if (v < lo || v > hi)
        return ink_usage("%s: --%s %g is out of range [%g, %g]", cmd, opt, v, lo, hi);
    *out = v;
    return 0;
}

int ink_opt_error(const char *cmd, int c, int optind_now, char **argv)
{
    const char *arg = argv[optind_now - 1];
    if (c == ':') return ink_usage("%s: option '%s' needs a value", cmd, arg);
    return ink_usage("%s: unknown option '%s' (see `inkflow %s --help`)", cmd, arg, cmd);
}
