/* Subcommands of the inkflow program (tools/). */
#ifndef INK_CLI_H
#define INK_CLI_H

#include <stdarg.h>

/* Print "inkflow: message" to stderr; returns 2 (usage error). */
int ink_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int ink_cmd_send(int argc, char **argv);
int ink_cmd_recv(int argc, char **argv);
int ink_cmd_query(int argc, char **argv);
int ink_cmd_keygen(int argc, char **argv);

#endif
