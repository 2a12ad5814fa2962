/* tests/fuzz/fuzz_config.c: the command-line loader, HOST:PORT and CIDR parsers. The input is
 * split at NUL bytes into arguments. Oracle: whatever is accepted is well-formed (ports in
 * range, prefixes in range, host bits clear), and every refusal says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static void check_cidr(const char *text)
{
    struct moat_cfg_cidr c;
    char err[256] = "";
    if (moat_cfg_cidr_parse(text, &c, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();
        return;
    }
    unsigned max = c.family == 4 ? 32 : 128;
    if ((c.family != 4 && c.family != 6) || c.prefix_len > max)
        abort();
    if (!moat_cfg_cidr_contains(&c, c.family, c.addr)) /* its own network address */
        abort();
}

static void check_hostport(const char *text)
{
    struct moat_cfg_hostport hp;
    char err[256] = "";
    if (moat_cfg_hostport_parse(text, 0, &hp, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();
        return;
    }
    if (hp.port == 0 || hp.host[0] == '\0' || strlen(hp.host) >= sizeof(hp.host))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[65] = {"moat"};
    int argc = 1;
    for (char *p = buf; p <= buf + size && argc < 64; p += strlen(p) + 1)
        argv[argc++] = p;
    for (int i = 1; i < argc; i++) {
        check_cidr(argv[i]);
        check_hostport(argv[i]);
    }
    struct moat_cfg *cfg = NULL;
    char err[512] = "";
    enum moat_cfg_result r = moat_cfg_from_argv(argc, argv, 2, &cfg, err, sizeof(err));
    if (r == MOAT_CFG_RUN || r == MOAT_CFG_CHECK) { /* check mode (-t) loads the same model */
        if (cfg->pools[0].n_backends == 0 || cfg->n_listeners == 0 || cfg->workers < 1 ||
            cfg->workers > 256 || cfg->listeners[0].n_certs > MOAT_CFG_MAX_CERTS)
            abort();
        moat_cfg_free(cfg);
    } else if (r == MOAT_CFG_BAD_ARGS && err[0] == '\0') {
        abort();
    } else if (cfg != NULL) {
        abort();
    }
    free(buf);
    return 0;
}
