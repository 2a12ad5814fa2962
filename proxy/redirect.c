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

/* host (len bytes, a Host value or an absolute-form authority) without its port, if it is a
 * name or an IP literal moat may write into a Location: 1, else 0. */
static int host_part(const char *host, size_t len, size_t *host_len)
{
    size_t n = 0;
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close == NULL)
            return 0;
        n = (size_t)(close - host) + 1;
        for (size_t i = 1; i + 1 < n; i++)
            if (!strchr("0123456789abcdefABCDEF:.", host[i]))
                return 0;
    } else {
        while (n < len && host[n] != ':') {
            char ch = host[n];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
                return 0;
            n++;
        }
    }
    *host_len = n;
    return n > 0 && (n == len || host[n] == ':');
}

static void on_head(void *arg, struct moat_plain_conn *c, const struct moat_http_head *h)
{
    (void)arg;
    int head_only = h->method == MOAT_HTTP_M_HEAD;
    const char *path = h->target;
    size_t path_len = h->target_len;
    if (path_len > 0 && path[0] != '/') { /* absolute form: its path, or "/" */
        const char *scheme_end = memmem(path, path_len, "://", 3);
        const char *from = scheme_end != NULL ? scheme_end + 3 : path + path_len;
        const char *slash = memchr(from, '/', path_len - (size_t)(from - path));
        path = slash != NULL ? slash : "/";
        path_len = slash != NULL ? h->target_len - (size_t)(slash - h->target) : 1;
    }
    size_t host_len = 0;
    if (!host_part(h->host, h->host_len, &host_len)) {
        moat_plain_answer_text(c, 400, "a Host is needed to redirect to https://\n", head_only);
        return;
    }
    if (path_len >= sizeof(ACME_PREFIX) - 1 && memcmp(path, ACME_PREFIX,
                                                      sizeof(ACME_PREFIX) - 1) == 0) {
        moat_plain_answer_text(c, 404, "no ACME challenge is pending here\n", head_only);
        return;
    }
    char port[8] = "";
    if (redirect.https_port != 443)
        snprintf(port, sizeof(port), ":%u", redirect.https_port);
    char extra[1400];
    int n = snprintf(extra, sizeof(extra), "Location: https://%.*s%s%.*s\r\n", (int)host_len,
                     h->host, port, (int)path_len, path);
    if (n < 0 || (size_t)n >= sizeof(extra)) {
        moat_plain_answer_text(c, 414, "too long to redirect\n", head_only);
        return;
    }
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
