/* bench/backend.c: the plain-HTTP/1.1 backend behind every proxy in bench/run.sh.
 *
 *   GET  /small   200, 100-byte body
 *   GET  /1m      200, 1 MiB body
 *   POST /upload  reads the whole body (Content-Length or chunked), then 200 with a short body
 *   else          404
 *
 * One thread, epoll, keep-alive, bodies served from memory and uploads discarded as they arrive:
 * cheap enough per request that the proxy, not the backend, is what a run measures. Uploads are
 * answered only after the last body byte, as a real application does; nginx's `return 200`
 * would answer before reading, which lets proxies cut the upload short.
 * It trusts its clients (the proxies under test): parsing is just enough for their requests.
 *
 * Usage: backend [PORT]   listens on 127.0.0.1:PORT (0 or none: any free port) and prints
 * "listening 127.0.0.1:PORT" on stdout once ready. Runs until SIGTERM or SIGINT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_CAP (64 * 1024)      /* request head limit and read chunk */
#define BIG_BYTES (1 << 20)     /* /1m */
#define SMALL_BYTES 100         /* /small */
#define MAX_EVENTS 256

enum body_state {
    BODY_NONE,       /* reading a request head */
    BODY_LENGTH,     /* discarding body_left bytes of a Content-Length body */
    BODY_CHUNK_SIZE, /* reading a chunk-size line */
    BODY_CHUNK_DATA, /* discarding body_left chunk bytes */
    BODY_CHUNK_CRLF, /* the CRLF after chunk data */
    BODY_TRAILERS,   /* trailer lines until an empty one */
};

enum route {
    ROUTE_NONE,   /* no request head parsed yet */
    ROUTE_SMALL,
    ROUTE_BIG,
    ROUTE_UPLOAD,
    ROUTE_404,
};

struct conn {
    int fd;
    char in[IN_CAP];
    size_t in_len;         /* bytes of in[] not yet consumed */
    enum body_state state;
    uint64_t body_left;    /* bytes, for BODY_LENGTH and BODY_CHUNK_DATA */
    enum route route;      /* what to answer once the body is read */
    int close_after;       /* Connection: close or HTTP/1.0 without keep-alive */
    struct iovec out[2];   /* head + body still to write; borrowed static memory */
    int writing;           /* a response is being written: the next request waits */
};

static char big_body[BIG_BYTES];
static char small_body[SMALL_BYTES];
static const char small_head[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n";
static const char big_head[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n";
static const char upload_resp[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
static const char not_found[] =
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n";

static volatile sig_atomic_t stopping;
static int epfd;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c);
}

static void want_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Case-insensitive search for header @name in the head [p, end); returns its value or NULL. */
static const char *header_value(const char *p, const char *end, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = memchr(p, '\n', (size_t)(end - p)); line != NULL && line + 1 < end;
         line = memchr(line + 1, '\n', (size_t)(end - line - 1))) {
        const char *h = line + 1;
        if ((size_t)(end - h) > len && strncasecmp(h, name, len) == 0 && h[len] == ':') {
            h += len + 1;
            while (*h == ' ' || *h == '\t')
                h++;
            return h;
        }
    }
    return NULL;
}

/* Parses one request head at the front of in[]; returns 1 if one was consumed, 0 if more bytes
 * are needed, -1 to close. */
static int parse_head(struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->in_len == IN_CAP ? -1 : 0;
    end += 4;
    *(end - 1) = '\0'; /* header_value() stops at the blank line */
    const char *p = c->in;
    const char *te = header_value(p, end, "Transfer-Encoding");
    const char *cl = header_value(p, end, "Content-Length");
    const char *conn_hdr = header_value(p, end, "Connection");
    int is_http10 = memmem(p, (size_t)(end - p), "HTTP/1.0\r\n", 10) != NULL;
    c->close_after = conn_hdr != NULL ? strncasecmp(conn_hdr, "close", 5) == 0 : is_http10;

    if (strncmp(p, "GET /small ", 11) == 0)
        c->route = ROUTE_SMALL;
    else if (strncmp(p, "GET /1m ", 8) == 0)
        c->route = ROUTE_BIG;
    else if (strncmp(p, "POST /upload ", 13) == 0)
        c->route = ROUTE_UPLOAD;
    else
        c->route = ROUTE_404;

    c->state = BODY_LENGTH;
    c->body_left = 0;
    if (te != NULL && strncasecmp(te, "chunked", 7) == 0)
        c->state = BODY_CHUNK_SIZE;
    else if (cl != NULL)
        c->body_left = strtoull(cl, NULL, 10);
    consume(c, (size_t)(end - c->in));
    return 1;
}

/* Discards body bytes from in[]; returns 1 when the body is complete, 0 for more, -1 to close. */
static int skip_body(struct conn *c)
{
    for (;;) {
        switch (c->state) {
        case BODY_NONE:
            return 1;
        case BODY_LENGTH:
        case BODY_CHUNK_DATA: {
            size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
            consume(c, n);
            c->body_left -= n;
            if (c->body_left > 0)
                return 0;
            c->state = c->state == BODY_LENGTH ? BODY_NONE : BODY_CHUNK_CRLF;
            break;
        }
        case BODY_CHUNK_SIZE:
        case BODY_TRAILERS: {
            char *eol = memmem(c->in, c->in_len, "\r\n", 2);
            if (eol == NULL)
                return c->in_len == IN_CAP ? -1 : 0;
            size_t line_len = (size_t)(eol - c->in);
            if (c->state == BODY_CHUNK_SIZE) {
                *eol = '\0';
                c->body_left = strtoull(c->in, NULL, 16); /* stops at ';' extensions */
                c->state = c->body_left == 0 ? BODY_TRAILERS : BODY_CHUNK_DATA;
            } else if (line_len == 0) {
                c->state = BODY_NONE;
            }
            consume(c, line_len + 2);
            break;
        }
        case BODY_CHUNK_CRLF:
            if (c->in_len < 2)
                return 0;
            consume(c, 2);
            c->state = BODY_CHUNK_SIZE;
            break;
        }
    }
}

/* Writes what is queued; returns 1 when done, 0 when the socket is full, -1 to close. */
static int flush_out(struct conn *c)
{
    while (c->out[0].iov_len + c->out[1].iov_len > 0) {
        ssize_t n = writev(c->fd, c->out, 2);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        for (int i = 0; i < 2; i++) {
            size_t k = (size_t)n < c->out[i].iov_len ? (size_t)n : c->out[i].iov_len;
            c->out[i].iov_base = (char *)c->out[i].iov_base + k;
            c->out[i].iov_len -= k;
            n -= (ssize_t)k;
        }
    }
    return 1;
}

static void queue_response(struct conn *c)
{
    const char *head = not_found, *body = NULL;
    size_t body_len = 0;
    if (c->route == ROUTE_SMALL) {
        head = small_head, body = small_body, body_len = SMALL_BYTES;
    } else if (c->route == ROUTE_BIG) {
        head = big_head, body = big_body, body_len = BIG_BYTES;
    } else if (c->route == ROUTE_UPLOAD) {
        head = upload_resp;
    }
    c->out[0] = (struct iovec){.iov_base = (void *)head, .iov_len = strlen(head)};
    c->out[1] = (struct iovec){.iov_base = (void *)body, .iov_len = body_len};
}

/* Handles every complete request in in[], one at a time; returns -1 to close. */
static int serve(struct conn *c)
{
    while (!c->writing) {
        if (c->route == ROUTE_NONE) {
            int rc = parse_head(c);
            if (rc <= 0)
                return rc;
        }
        int rc = skip_body(c);
        if (rc <= 0)
            return rc;
        queue_response(c);
        c->route = ROUTE_NONE;
        c->writing = 1;
        rc = flush_out(c);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            want_events(c, EPOLLOUT); /* stop reading until this response is out */
            return 0;
        }
        c->writing = 0;
        if (c->close_after)
            return -1;
    }
    return 0;
}

static void on_readable(struct conn *c)
{
    for (;;) {
        if (c->in_len == IN_CAP) /* a full buffer: serve() consumes, or closes on a huge head */
            break;
        ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        if (serve(c) < 0) {
            conn_close(c);
            return;
        }
        if (c->writing)
            return;
    }
}

static void on_writable(struct conn *c)
{
    int rc = flush_out(c);
    if (rc == 0)
        return;
    c->writing = 0;
    if (rc < 0 || c->close_after || serve(c) < 0) {
        conn_close(c);
        return;
    }
    if (!c->writing) {
        want_events(c, EPOLLIN);
        on_readable(c); /* bytes may have arrived while reads were off */
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    memset(big_body, 'x', sizeof(big_body));
    memset(small_body, 's', sizeof(small_body));
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 4096) != 0) {
        perror("backend: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof(addr);
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("listening 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    epfd = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, 1000);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof(*c));
                    if (c == NULL) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (c->writing) {
                on_writable(c);
            } else {
                on_readable(c);
            }
        }
    }
    return 0;
}
