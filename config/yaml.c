/* config/yaml.c: the YAML configuration loader (placeholder until the libyaml loader lands). */
#include <stdio.h>

#include "config/config.h"

int moat_cfg_load_yaml(const char *path, unsigned default_workers, struct moat_cfg **out,
                       char *err, size_t err_len)
{
    (void)default_workers;
    *out = NULL;
    snprintf(err, err_len, "%s: YAML configuration files are not supported yet", path);
    return -1;
}
