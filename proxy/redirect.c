/* proxy/redirect.c: the port-80 listener (redirect_http, --redirect-http): every request gets
 * 308 to the same host, path and query on https://, so http://example.com/a?b=1 lands on the
 * site; /.well-known/acme-challenge/ is kept for ACME's HTTP-01 (404 until moat answers it).
 * A plain-HTTP server on the control loop (proxy/plain.h). */
#include "proxy/redirect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/plain.h"

#define MAX_CONNS 256 /* redirect connections open at once; more wait in the backlog */
#define ACME_PREFIX "/.well-known/acme-challenge/"

static struct {
    struct moat_plain_server *server; /* owned; NULL: off or stopped */
    unsigned https_port;              /* named in Location unless 443 */
} redirect;

static void on_head(void *arg, struct moat_plain_conn *c, const struct moat_http_head *h)
{
    (void)arg;
    int head_only = h->method == MOAT_HTTP_M_HEAD;
    char location[1100];
    long n = moat_http_https_location(h, redirect.https_port, location, sizeof(location));
    if (n == 0) {
        moat_plain_answer_text(c, 400, "a Host is needed to redirect to https://\n", head_only);
        return;
    }
    if (n < 0) {
        moat_plain_answer_text(c, 414, "too long to redirect\n", head_only);
        return;
    }
    const char *path = strchr(location + 8, '/'); /* after "https://" and the host */
    if (path != NULL && strncmp(path, ACME_PREFIX, sizeof(ACME_PREFIX) - 1) == 0) {
        moat_plain_answer_text(c, 404, "no ACME challenge is pending here\n", head_only);
        return;
    }
    char extra[1200];
    snprintf(extra, sizeof(extra), "Location: %s\r\n", location);
    const char *body = "moved to https://\n";
    moat_plain_answer(c, 308, extra, "text/plain; charset=utf-8", body, strlen(body), head_only);
}

int moat_redirect_start(uv_loop_t *loop, const struct moat_cfg *cfg, unsigned https_port)
{
    if (!cfg->has_redirect)
        return 0;
    redirect.https_port = cfg->redirect_https_port != 0 ? cfg->redirect_https_port : https_port;
    struct sockaddr_storage bound;
    char err[256];
    redirect.server = moat_plain_listen(loop, &cfg->redirect, "redirect", MAX_CONNS, on_head,
                                        NULL, &bound, err, sizeof(err));
    if (redirect.server == NULL) {
        fprintf(stderr, "moat: error: --redirect-http %s%s%s:%u: %s\n",
                cfg->redirect.is_ipv6 ? "[" : "", cfg->redirect.host,
                cfg->redirect.is_ipv6 ? "]" : "", cfg->redirect.port, err);
        return -1;
    }
    char url[96];
    moat_plain_url(&bound, url, sizeof(url));
    moat_log(MOAT_LOG_INFO, "main redirect listening on %s (to https:// port %u)", url,
             redirect.https_port);
    return 0;
}

void moat_redirect_stop(void)
{
    moat_plain_close(redirect.server);
    redirect.server = NULL;
}
