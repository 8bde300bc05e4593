/* Paths written in a config are relative to the config's directory. */
#ifndef INK_PATH_H
#define INK_PATH_H

#include <stddef.h>

/* Resolve a config-relative path into buf (absolute paths and "-" come back
 * unchanged, as does anything when base_dir is NULL or empty). Returns the
 * path to use: either `path` or buf. */
const char *ink_path_resolve(const char *base_dir, const char *path, char *buf, size_t n);

#endif
