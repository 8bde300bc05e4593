/* Subcommands of the inkflow program (tools/) and the helpers they share
 * (tools/cli.c). Options are parsed with getopt_long over (argc, argv) where
 * argv[0] is the subcommand's name; every numeric value is checked. */
#ifndef INK_CLI_H
#define INK_CLI_H

#include <stdarg.h>

/* Print "inkflow: message" to stderr; returns 2 (usage error). */
int ink_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The whole of s as a number in [lo, hi] into *out: 0, or a printed usage
 * error and 2 (`cmd: --opt needs ...`). */
int ink_opt_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int ink_opt_double(const char *cmd, const char *opt, const char *s, double lo, double hi,
                   double *out);
/* getopt_long returned '?' or ':' (optstring starts with ':'): print why; 2. */
int ink_opt_error(const char *cmd, int c, int optind_now, char **argv);

/* argv[0] is the subcommand's name ("send"), as for getopt_long. */
int ink_cmd_send(int argc, char **argv);
int ink_cmd_recv(int argc, char **argv);
int ink_cmd_query(int argc, char **argv);
int ink_cmd_keygen(int argc, char **argv);
int ink_cmd_top(int argc, char **argv);  /* tools/top.c */
int ink_cmd_test(int argc, char **argv); /* tools/cfgtest.c */

#endif
