/* config/yaml.c: the configuration file loader: reads the file, has yaml_tree.c parse it and
 * yaml_keys.c apply it to a fresh model, and reports every error at once. */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/model.h"
#include "config/yaml_keys.h"
#include "config/yaml_tree.h"

/* A configuration is a page or two; anything this large is the wrong file. */
#define MAX_FILE_BYTES (4 << 20)

int moat_cfg_load_yaml_buffer(const char *name, const char *buf, size_t len,
                              unsigned default_workers, struct moat_cfg **out, char *err,
                              size_t err_len)
{
    struct moat_cfg_diag diag = {0};
    struct moat_yaml_node *root = NULL;
    unsigned line, column;
    char why[512];
    *out = NULL;
    struct moat_cfg *cfg = moat_cfg_new(default_workers);
    if (cfg == NULL || (cfg->config_file = strdup(name)) == NULL) {
        snprintf(err, err_len, "%s: out of memory", name);
        moat_cfg_free(cfg);
        return -1;
    }
    if (moat_yaml_parse(buf, len, &root, &line, &column, why, sizeof(why)) != 0)
        moat_cfg_diag_add(&diag, line, column, "syntax error", "%s", why);
    else
        moat_cfg_yaml_apply(root, cfg, &diag);
    moat_yaml_free(root);
    if (diag.n_errors > 0) {
        moat_cfg_diag_write(&diag, name, err, err_len);
        moat_cfg_diag_free(&diag);
        moat_cfg_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

/* The whole file into a new buffer (*buf owned by the caller), or -1 with err set. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    *buf = malloc(MAX_FILE_BYTES + 1);
    *len = *buf != NULL ? fread(*buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int failed = *buf == NULL || ferror(f);
    int saved = errno;
    fclose(f);
    if (failed || *len > MAX_FILE_BYTES) {
        if (*buf == NULL)
            snprintf(err, err_len, "%s: out of memory", path);
        else if (failed)
            snprintf(err, err_len, "%s: cannot read: %s", path, strerror(saved));
        else
            snprintf(err, err_len, "%s: larger than %d MiB: not a configuration file", path,
                     MAX_FILE_BYTES >> 20);
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

int moat_cfg_load_yaml(const char *path, unsigned default_workers, struct moat_cfg **out,
                       char *err, size_t err_len)
{
    char *buf;
    size_t len;
    *out = NULL;
    if (read_file(path, &buf, &len, err, err_len) != 0)
        return -1;
    int rc = moat_cfg_load_yaml_buffer(path, buf, len, default_workers, out, err, err_len);
    free(buf);
    return rc;
}
