#include "path.h"

#include <stdio.h>
#include <string.h>

const char *ink_path_resolve(const char *base_dir, const char *path, char *buf, size_t n)
{
    int k = !base_dir || !*base_dir || path[0] == '/' || strcmp(path, "-") == 0
                ? snprintf(buf, n, "%s", path)
                : snprintf(buf, n, "%s/%s", base_dir, path);
    return k < 0 || (size_t)k >= n ? NULL : buf;
}
