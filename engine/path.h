/* Paths written in a config are relative to the config's directory. */
#ifndef INK_PATH_H
#define INK_PATH_H

#include <stddef.h>

/* Resolve a config-relative path into buf: base_dir/path, or path itself
 * when it is absolute, "-" (standard input or output) or base_dir is NULL
 * or empty. Returns buf, or NULL when the result needs more than n bytes.
 * The one path resolver: the snapshot directory, file sources and sinks,
 * CURVE key files, bkb's arms file. */
const char *ink_path_resolve(const char *base_dir, const char *path, char *buf, size_t n);

#endif
