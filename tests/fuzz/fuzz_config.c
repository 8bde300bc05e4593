/* libFuzzer target for the YAML config loader (engine/config.h): any bytes
 * must either load into a checked config or fail with diagnostics, never
 * crash, hang or leak. libfyaml 0.7.12 hangs on some '%' directives in the
 * middle of a document; the loader guards that, and this target keeps it
 * guarded (libFuzzer's -timeout turns a hang into a finding). */
#include <stdlib.h>

#include "../../engine/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    struct ink_config cfg;
    struct ink_diags diags = {0};
    int rc = ink_config_load_buf("fuzz.yaml", (const char *)data, size, &cfg, &diags);
    if (rc == 0) {
        ink_config_free(&cfg);
    } else if (diags.n == 0) {
        abort(); /* a refused config always says why */
    }
    ink_diags_free(&diags);
    return 0;
}
