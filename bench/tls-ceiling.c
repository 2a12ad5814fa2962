/* bench/tls-ceiling.c: what mbedTLS itself costs a TLS server on one core, measured in memory.
 *
 * One thread drives an mbedTLS server and an mbedTLS client into each other over two in-memory
 * pipes (custom BIO callbacks, no sockets), and times only the server's calls with
 * CLOCK_THREAD_CPUTIME_ID: the client's work is done on the same thread but never counted. The
 * figures are the ceiling a proxy built on mbedTLS can reach per core, before any I/O, parsing
 * or copying of its own:
 *   - full handshakes per server CPU-second (TLS 1.3 and TLS 1.2 with an ECDSA P-256
 *     certificate, TLS 1.3 with an RSA-2048 one; X25519, no resumption, no tickets), the
 *     server's key held as moat holds it: an opaque PSA key where mbedTLS runs on PSA (the
 *     project's engine), else the parsed key,
 *   - record writes (16 KiB records, server encrypts) and record reads (server decrypts) in
 *     MiB per server CPU-second for each TLS 1.3 AEAD suite and two TLS 1.2 ones,
 *   - heap bytes held by one idle established server context (glibc mallinfo2() deltas around
 *     the server's calls only: Debian's build has no MBEDTLS_PLATFORM_MEMORY to hook calloc;
 *     the median over IDLE_CONTEXTS contexts held at once, in case one context's handshake
 *     grows state all of them share, such as a slice of PSA's key store),
 *   - and the RSS that RSS_CONTEXTS idle server contexts add, per context, with the client on
 *     a second thread (so in another malloc arena): measured as a proxy's RSS per idle
 *     connection is, where calloc'd pages never written cost nothing.
 *
 *
 * Output: one `name value unit` line per figure; lines starting with '#' are comments.
 * Usage: tls-ceiling [--quick] [--budget S] [--parts mem,hs,rsa,rec13,rec12] [--rsa-key PEM]
 *   (the project's engine cannot make RSA keys, so the RSA figure needs --rsa-key)
 * Build: cc -O2 -pthread -o tls-ceiling tls-ceiling.c \
 *        $(pkg-config --cflags --libs mbedtls mbedx509 mbedcrypto)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mallinfo2() */
#endif
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#if !defined(MBEDTLS_SSL_PROTO_TLS1_3) || !defined(MBEDTLS_SSL_SRV_C) || !defined(MBEDTLS_SSL_CLI_C)
#error "needs mbedTLS 3.6 built with TLS 1.3, server and client"
#endif

#define RECORD_BYTES 16384                 /* one full TLS record of plaintext */
#define BATCH_RECORDS 64                   /* 1 MiB per timed batch: amortizes the clock calls */
#define PIPE_CAP ((size_t)4 << 20)         /* > one batch of records with their overhead */
#define MAX_HANDSHAKE_ROUNDS 64            /* a handshake needs ~4; more means a stall */
#define IDLE_CONTEXTS 15                   /* server contexts measured for the median */
#define RSS_CONTEXTS 1000                  /* server contexts held for the RSS figure */

/* One direction of the in-memory transport: bytes [head, tail) are unread. Owned by main. */
struct pipe {
    unsigned char *buf; /* owned, PIPE_CAP bytes */
    size_t head;
    size_t tail;
};

/* What one endpoint's BIO reads from and writes to (both borrowed). */
struct bio {
    struct pipe *rx;
    struct pipe *tx;
};

static int bio_send(void *arg, const unsigned char *src, size_t len)
{
    struct pipe *p = ((struct bio *)arg)->tx;
    if (p->head == p->tail)
        p->head = p->tail = 0; /* drained: start again at the front */
    if (PIPE_CAP - p->tail < len) {
        memmove(p->buf, p->buf + p->head, p->tail - p->head);
        p->tail -= p->head;
        p->head = 0;
        if (PIPE_CAP - p->tail < len)
            return MBEDTLS_ERR_SSL_WANT_WRITE; /* never happens with BATCH_RECORDS records */
    }
    memcpy(p->buf + p->tail, src, len);
    p->tail += len;
    return (int)len;
}

static int bio_recv(void *arg, unsigned char *dst, size_t cap)
{
    struct pipe *p = ((struct bio *)arg)->rx;
    size_t n = p->tail - p->head;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ; /* empty means "not yet", never end of stream */
    if (n > cap)
        n = cap;
    memcpy(dst, p->buf + p->head, n);
    p->head += n;
    return (int)n;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Heap bytes in use per glibc, small chunks plus mmapped ones. */
static long heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)(mi.uordblks + mi.hblkhd);
}

/* This process's resident set in KiB, from /proc/self/status; -1 if unreadable. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Counts the server's cost: CPU seconds and, when enabled, heap growth inside its calls. */
struct meter {
    double cpu_s;
    long heap_bytes;
    int count_heap; /* mallinfo2() walks the heap: only in the untimed memory run */
};

static void meter_start(struct meter *m, double *t0, long *h0)
{
    if (m->count_heap)
        *h0 = heap_in_use();
    *t0 = thread_cpu_s();
}

static void meter_stop(struct meter *m, double t0, long h0)
{
    m->cpu_s += thread_cpu_s() - t0;
    if (m->count_heap)
        m->heap_bytes += heap_in_use() - h0;
}

static void die(const char *what, int rc)
{
    char why[160] = "";
    if (rc != 0)
        mbedtls_strerror(rc, why, sizeof(why));
    fprintf(stderr, "tls-ceiling: %s failed: -0x%04x %s\n", what, (unsigned)-rc, why);
    exit(1);
}

/* A certificate and its key; `key` points at `parsed` or, for the opaque runs, `opaque`. */
struct certkey {
    mbedtls_pk_context parsed;
    mbedtls_pk_context opaque;
    mbedtls_pk_context *key;
    mbedtls_x509_crt cert;
};

/* Shared by every measurement; owned by main. */
struct world {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    struct certkey ec, rsa;
    struct certkey *use; /* the one conf_pair() gives the server */
    struct pipe c2s, s2c;
    struct bio server_bio, client_bio;
};

/* An ECDSA P-256 (or RSA-2048) key and a self-signed certificate for it, made in memory: the
 * same kind of certificate bench/run.sh gives the proxies, and this program needs no files. */
static const char *rsa_key_file; /* --rsa-key: a PEM RSA-2048 key, or NULL */

static void make_cert(struct world *w, struct certkey *ck, int rsa)
{
    mbedtls_pk_init(&ck->parsed);
    mbedtls_pk_init(&ck->opaque);
    mbedtls_x509_crt_init(&ck->cert);
    ck->key = &ck->parsed;
    int rc = rsa ? 0 : mbedtls_pk_setup(&ck->parsed, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc != 0)
        die("pk_setup", rc);
    if (rsa)
        rc = mbedtls_pk_parse_keyfile(&ck->parsed, rsa_key_file, NULL, mbedtls_ctr_drbg_random,
                                      &w->drbg);
    else
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(ck->parsed),
                                 mbedtls_ctr_drbg_random, &w->drbg);
    if (rc != 0)
        die("gen_key", rc);

    mbedtls_x509write_cert crt;
    mbedtls_x509write_crt_init(&crt);
    const unsigned char serial[] = {0x01, 0x02, 0x03, 0x04};
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &ck->parsed);
    mbedtls_x509write_crt_set_issuer_key(&crt, &ck->parsed);
    if ((rc = mbedtls_x509write_crt_set_serial_raw(&crt, (unsigned char *)serial,
                                                   sizeof(serial))) != 0 ||
        (rc = mbedtls_x509write_crt_set_validity(&crt, "20250101000000", "20350101000000")) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_name(&crt, "CN=localhost")) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(&crt, "CN=localhost")) != 0)
        die("x509write_crt_set_*", rc);
    unsigned char der[4096];
    int len = mbedtls_x509write_crt_der(&crt, der, sizeof(der), mbedtls_ctr_drbg_random, &w->drbg);
    if (len <= 0)
        die("x509write_crt_der", len);
    rc = mbedtls_x509_crt_parse_der(&ck->cert, der + sizeof(der) - len, (size_t)len);
    if (rc != 0)
        die("x509_crt_parse_der", rc);
    mbedtls_x509write_crt_free(&crt);
}

#if defined(MBEDTLS_USE_PSA_CRYPTO)
/* ck->opaque: the same key imported once into PSA, allowing randomized ECDSA (any hash) or
 * RSA-PSS (any hash; PKCS#1 v1.5 as second algorithm for TLS 1.2). */
static void make_opaque(struct certkey *ck, int rsa)
{
    psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    int rc = mbedtls_pk_get_psa_attributes(&ck->parsed, PSA_KEY_USAGE_SIGN_HASH, &attr);
    if (rc != 0)
        die("pk_get_psa_attributes", rc);
    psa_set_key_algorithm(&attr, rsa ? PSA_ALG_RSA_PSS(PSA_ALG_ANY_HASH)
                                     : PSA_ALG_ECDSA(PSA_ALG_ANY_HASH));
    if (rsa)
        psa_set_key_enrollment_algorithm(&attr, PSA_ALG_RSA_PKCS1V15_SIGN(PSA_ALG_ANY_HASH));
    rc = mbedtls_pk_import_into_psa(&ck->parsed, &attr, &id);
    if (rc != 0)
        die("pk_import_into_psa", rc);
    rc = mbedtls_pk_setup_opaque(&ck->opaque, id);
    if (rc != 0)
        die("pk_setup_opaque", rc);
}
#endif

/* X25519 first, so it is the key exchange; P-256 also offered because a TLS 1.2 server only
 * uses an ECDSA certificate whose curve the client lists (RFC 8422 §5.1). */
static const uint16_t groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

/* Server and client configurations for one suite. The server mirrors a production proxy's
 * choices (ECDSA P-256 certificate, X25519 first) minus tickets and any session cache: every
 * handshake is full. */
static void conf_pair(struct world *w, mbedtls_ssl_config *srv, mbedtls_ssl_config *cli,
                      const int *suite, int tls_version)
{
    mbedtls_ssl_config_init(srv);
    mbedtls_ssl_config_init(cli);
    int rc = mbedtls_ssl_config_defaults(srv, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(cli, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0)
        die("ssl_config_defaults", rc);
    mbedtls_ssl_config *both[] = {srv, cli};
    for (int i = 0; i < 2; i++) {
        mbedtls_ssl_conf_rng(both[i], mbedtls_ctr_drbg_random, &w->drbg);
        mbedtls_ssl_conf_min_tls_version(both[i], (mbedtls_ssl_protocol_version)tls_version);
        mbedtls_ssl_conf_max_tls_version(both[i], (mbedtls_ssl_protocol_version)tls_version);
        mbedtls_ssl_conf_ciphersuites(both[i], suite);
        mbedtls_ssl_conf_groups(both[i], groups);
    }
    rc = mbedtls_ssl_conf_own_cert(srv, &w->use->cert, w->use->key);
    if (rc != 0)
        die("ssl_conf_own_cert", rc);
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_new_session_tickets(srv, 0); /* and no ticket callbacks: never resumed */
    mbedtls_ssl_conf_session_tickets(cli, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
    /* The client does not verify: its cost is not measured, and no chain is to be trusted. */
    mbedtls_ssl_conf_authmode(cli, MBEDTLS_SSL_VERIFY_NONE);
}

/* Both contexts on their pipes; the pipes start empty. */
static void ssl_pair(struct world *w, mbedtls_ssl_context *s, mbedtls_ssl_context *c,
                     mbedtls_ssl_config *srv, mbedtls_ssl_config *cli, struct meter *m)
{
    w->c2s.head = w->c2s.tail = 0;
    w->s2c.head = w->s2c.tail = 0;
    double t0;
    long h0 = 0;
    meter_start(m, &t0, &h0);
    mbedtls_ssl_init(s);
    int rc = mbedtls_ssl_setup(s, srv);
    mbedtls_ssl_set_bio(s, &w->server_bio, bio_send, bio_recv, NULL);
    meter_stop(m, t0, h0);
    if (rc != 0)
        die("ssl_setup(server)", rc);
    mbedtls_ssl_init(c);
    rc = mbedtls_ssl_setup(c, cli);
    if (rc == 0)
        rc = mbedtls_ssl_set_hostname(c, "localhost");
    if (rc != 0)
        die("ssl_setup(client)", rc);
    mbedtls_ssl_set_bio(c, &w->client_bio, bio_send, bio_recv, NULL);
}

/* Client-side calls, run either here or, for the RSS figure, on a second thread so that the
 * client's allocations land in another malloc arena and leave the server's pages alone. */
enum client_op {
    OP_SETUP,     /* init + setup on remote.conf, hostname, BIO */
    OP_RESET,     /* mbedtls_ssl_session_reset */
    OP_HANDSHAKE, /* mbedtls_ssl_handshake */
    OP_WRITE,     /* mbedtls_ssl_write of buf, len */
    OP_DRAIN,     /* drain(): read all that is there */
    OP_FREE,      /* mbedtls_ssl_free */
    OP_QUIT,      /* the client thread ends */
};

static size_t drain(mbedtls_ssl_context *ssl, unsigned char *buf);

struct remote {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int has_job;                     /* set by the caller, cleared by the client thread */
    enum client_op op;               /* the job */
    mbedtls_ssl_context *ssl;        /* borrowed: the client context */
    const mbedtls_ssl_config *conf;  /* borrowed, for OP_SETUP */
    struct bio *bio;                 /* borrowed, for OP_SETUP */
    const unsigned char *buf;        /* borrowed, for OP_WRITE */
    size_t len;
    long result;                     /* the call's return value */
};

static struct remote *remote; /* NULL: client calls run on the calling thread */

static long client_op_run(struct remote *r)
{
    static unsigned char scratch[RECORD_BYTES];
    int rc;
    switch (r->op) {
    case OP_SETUP:
        mbedtls_ssl_init(r->ssl);
        rc = mbedtls_ssl_setup(r->ssl, r->conf);
        if (rc == 0)
            rc = mbedtls_ssl_set_hostname(r->ssl, "localhost");
        mbedtls_ssl_set_bio(r->ssl, r->bio, bio_send, bio_recv, NULL);
        return rc;
    case OP_RESET:
        return mbedtls_ssl_session_reset(r->ssl);
    case OP_HANDSHAKE:
        return mbedtls_ssl_handshake(r->ssl);
    case OP_WRITE:
        return mbedtls_ssl_write(r->ssl, r->buf, r->len);
    case OP_DRAIN:
        return (long)drain(r->ssl, scratch);
    case OP_FREE:
        mbedtls_ssl_free(r->ssl);
        return 0;
    case OP_QUIT:
        break;
    }
    return 0;
}

static void *client_thread_main(void *arg)
{
    struct remote *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->has_job)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->op == OP_QUIT)
            break;
        r->result = client_op_run(r);
        r->has_job = 0;
        pthread_cond_broadcast(&r->cv);
    }
    r->has_job = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Runs one client call, on the client thread when there is one, and waits for its result. */
static long client_call(enum client_op op, mbedtls_ssl_context *ssl, const unsigned char *buf,
                        size_t len)
{
    static struct remote local;
    struct remote *r = remote != NULL ? remote : &local;
    if (remote == NULL) {
        r->op = op, r->ssl = ssl, r->buf = buf, r->len = len;
        return client_op_run(r);
    }
    pthread_mutex_lock(&r->mu);
    r->op = op, r->ssl = ssl, r->buf = buf, r->len = len;
    r->has_job = 1;
    pthread_cond_broadcast(&r->cv);
    while (r->has_job)
        pthread_cond_wait(&r->cv, &r->mu);
    long result = r->result;
    pthread_mutex_unlock(&r->mu);
    return result;
}

static int handshake_pending(int rc)
{
    return rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Runs one full handshake, the server's calls metered. */
static void handshake(mbedtls_ssl_context *s, mbedtls_ssl_context *c, struct meter *m)
{
    int c_done = 0, s_done = 0;
    for (int round = 0; round < MAX_HANDSHAKE_ROUNDS && !(c_done && s_done); round++) {
        if (!c_done) {
            int rc = (int)client_call(OP_HANDSHAKE, c, NULL, 0);
            if (rc == 0)
                c_done = 1;
            else if (!handshake_pending(rc))
                die("handshake(client)", rc);
        }
        if (!s_done) {
            double t0;
            long h0 = 0;
            meter_start(m, &t0, &h0);
            int rc = mbedtls_ssl_handshake(s);
            meter_stop(m, t0, h0);
            if (rc == 0)
                s_done = 1;
            else if (!handshake_pending(rc))
                die("handshake(server)", rc);
        }
    }
    if (!(c_done && s_done))
        die("handshake (stalled)", 0);
}

/* Reads whatever the peer sent until its pipe is empty; returns the plaintext bytes. */
static size_t drain(mbedtls_ssl_context *ssl, unsigned char *buf)
{
    size_t total = 0;
    for (;;) {
        int rc = mbedtls_ssl_read(ssl, buf, RECORD_BYTES);
        if (rc > 0) {
            total += (size_t)rc;
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ)
            return total;
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
            continue;
        die("ssl_read", rc);
    }
}

/* Writes @n_records full records; returns the plaintext bytes. */
static size_t write_records(mbedtls_ssl_context *ssl, const unsigned char *buf, int n_records)
{
    size_t total = 0;
    for (int i = 0; i < n_records; i++) {
        size_t off = 0;
        while (off < RECORD_BYTES) { /* ssl_write may take less than asked */
            int rc = mbedtls_ssl_write(ssl, buf + off, RECORD_BYTES - off);
            if (rc <= 0)
                die("ssl_write", rc);
            off += (size_t)rc;
        }
        total += off;
    }
    return total;
}

struct suite_case {
    const char *iana;   /* output name: the IANA (and OpenSSL) name */
    const char *mbedtls; /* what mbedtls_ssl_get_ciphersuite() says */
    int id;             /* MBEDTLS_TLS1_3_* (or TLS 1.2) suite */
    int version;        /* MBEDTLS_SSL_VERSION_TLS1_3 or _TLS1_2 */
};

static void print_line(const char *name, double value, const char *unit)
{
    printf("%s %.1f %s\n", name, value, unit);
    fflush(stdout);
}

/* Full handshakes per server CPU-second for one suite and version. */
static void bench_handshakes(struct world *w, const char *name, int suite_id, int tls_version,
                             double budget_s)
{
    const int suite[] = {suite_id, 0};
    mbedtls_ssl_config srv, cli;
    conf_pair(w, &srv, &cli, suite, tls_version);
    mbedtls_ssl_context s, c;
    struct meter warm = {0};
    ssl_pair(w, &s, &c, &srv, &cli, &warm);
    handshake(&s, &c, &warm); /* warm-up: first-use set-up in PSA and the DRBG */
    printf("# %s: %s %s\n", name, mbedtls_ssl_get_version(&s), mbedtls_ssl_get_ciphersuite(&s));

    /* Each round is what a server does per connection: reset a pooled context, handshake. */
    struct meter m = {0};
    long n = 0;
    while (m.cpu_s < budget_s && n < 1000000) {
        w->c2s.head = w->c2s.tail = 0;
        w->s2c.head = w->s2c.tail = 0;
        int rc = mbedtls_ssl_session_reset(&c);
        if (rc != 0)
            die("session_reset(client)", rc);
        double t0;
        long h0 = 0;
        meter_start(&m, &t0, &h0);
        rc = mbedtls_ssl_session_reset(&s);
        meter_stop(&m, t0, h0);
        if (rc != 0)
            die("session_reset(server)", rc);
        handshake(&s, &c, &m);
        n++;
    }
    print_line(name, (double)n / m.cpu_s, "handshakes/s");
    mbedtls_ssl_free(&s);
    mbedtls_ssl_free(&c);
    mbedtls_ssl_config_free(&srv);
    mbedtls_ssl_config_free(&cli);
}

/* MiB per server CPU-second of 16 KiB records: server encrypting (write) and decrypting (read). */
static void bench_records(struct world *w, const struct suite_case *sc, double budget_s)
{
    const int suite[] = {sc->id, 0};
    mbedtls_ssl_config srv, cli;
    conf_pair(w, &srv, &cli, suite, sc->version);
    mbedtls_ssl_context s, c;
    struct meter unused = {0};
    ssl_pair(w, &s, &c, &srv, &cli, &unused);
    handshake(&s, &c, &unused);
    if (strcmp(mbedtls_ssl_get_ciphersuite(&s), sc->mbedtls) != 0)
        die("suite negotiation", 0);
    const char *pfx = sc->version == MBEDTLS_SSL_VERSION_TLS1_2 ? "tls12_" : "";
    static unsigned char plain[RECORD_BYTES], scratch[RECORD_BYTES];
    memset(plain, 'x', sizeof(plain));

    struct meter wm = {0};
    size_t bytes = 0;
    while (wm.cpu_s < budget_s && bytes < ((size_t)64 << 30)) {
        double t0;
        long h0 = 0;
        meter_start(&wm, &t0, &h0);
        bytes += write_records(&s, plain, BATCH_RECORDS);
        meter_stop(&wm, t0, h0);
        if (drain(&c, scratch) != (size_t)BATCH_RECORDS * RECORD_BYTES)
            die("client read (short)", 0);
    }
    char name[96];
    snprintf(name, sizeof(name), "ceiling_write_%s%s", pfx, sc->iana);
    print_line(name, (double)bytes / (1 << 20) / wm.cpu_s, "MiB/s");

    struct meter rm = {0};
    bytes = 0;
    while (rm.cpu_s < budget_s && bytes < ((size_t)64 << 30)) {
        write_records(&c, plain, BATCH_RECORDS);
        double t0;
        long h0 = 0;
        meter_start(&rm, &t0, &h0);
        size_t got = drain(&s, scratch);
        meter_stop(&rm, t0, h0);
        if (got != (size_t)BATCH_RECORDS * RECORD_BYTES)
            die("server read (short)", 0);
        bytes += got;
    }
    snprintf(name, sizeof(name), "ceiling_read_%s%s", pfx, sc->iana);
    print_line(name, (double)bytes / (1 << 20) / rm.cpu_s, "MiB/s");

    mbedtls_ssl_free(&s);
    mbedtls_ssl_free(&c);
    mbedtls_ssl_config_free(&srv);
    mbedtls_ssl_config_free(&cli);
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Heap held by one server context after a TLS 1.3 handshake and one small exchange each way:
 * what an idle keep-alive connection costs in mbedTLS, its struct not included. */
static void bench_idle_memory(struct world *w)
{
    const int suite[] = {MBEDTLS_TLS1_3_AES_256_GCM_SHA384, 0};
    mbedtls_ssl_config srv, cli;
    conf_pair(w, &srv, &cli, suite, MBEDTLS_SSL_VERSION_TLS1_3);
    /* A first pair, kept alive, so that lazily made global state (PSA, the DRBG) exists
     * before the measured contexts. */
    mbedtls_ssl_context warm, c, servers[IDLE_CONTEXTS];
    struct meter unused = {0};
    ssl_pair(w, &warm, &c, &srv, &cli, &unused);
    handshake(&warm, &c, &unused);

    static const unsigned char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    unsigned char scratch[RECORD_BYTES];
    long heap_bytes[IDLE_CONTEXTS];
    for (int i = 0; i < IDLE_CONTEXTS; i++) {
        mbedtls_ssl_free(&c); /* the client is not measured: a fresh one per server */
        struct meter m = {.count_heap = 1};
        ssl_pair(w, &servers[i], &c, &srv, &cli, &m);
        handshake(&servers[i], &c, &m);
        if (mbedtls_ssl_write(&c, req, sizeof(req) - 1) != (int)sizeof(req) - 1)
            die("ssl_write(client)", 0);
        double t0;
        long h0 = 0;
        meter_start(&m, &t0, &h0);
        size_t got = drain(&servers[i], scratch);
        int rc = mbedtls_ssl_write(&servers[i], req, sizeof(req) - 1);
        meter_stop(&m, t0, h0);
        if (got != sizeof(req) - 1 || rc != (int)sizeof(req) - 1)
            die("idle exchange", rc);
        drain(&c, scratch);
        heap_bytes[i] = m.heap_bytes;
    }
    qsort(heap_bytes, IDLE_CONTEXTS, sizeof(heap_bytes[0]), cmp_long);
    long median = heap_bytes[IDLE_CONTEXTS / 2];

    print_line("ceiling_idle_ssl_heap", (double)median, "bytes");
    print_line("ceiling_ssl_context_struct", (double)sizeof(mbedtls_ssl_context), "bytes");
    print_line("ceiling_idle_ssl_total", (double)median + (double)sizeof(mbedtls_ssl_context),
               "bytes");
    for (int i = 0; i < IDLE_CONTEXTS; i++)
        mbedtls_ssl_free(&servers[i]);
    mbedtls_ssl_free(&c);
    mbedtls_ssl_free(&warm);
    mbedtls_ssl_config_free(&srv);
    mbedtls_ssl_config_free(&cli);
}

/* RSS added by RSS_CONTEXTS established server contexts, each heap-allocated as a proxy holds
 * them and idle after one small exchange each way. The client runs on its own thread (its own
 * malloc arena) and one client context, reset between handshakes, serves them all. Run first,
 * on a heap nothing has been freed to yet, as a fresh proxy's is. */
static void bench_idle_rss(struct world *w)
{
    const int suite[] = {MBEDTLS_TLS1_3_AES_256_GCM_SHA384, 0};
    mbedtls_ssl_config srv, cli;
    conf_pair(w, &srv, &cli, suite, MBEDTLS_SSL_VERSION_TLS1_3);
    static struct remote r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    r.conf = &cli;
    r.bio = &w->client_bio;
    if (pthread_create(&r.thread, NULL, client_thread_main, &r) != 0)
        die("pthread_create", 0);
    remote = &r;

    mbedtls_ssl_context **servers = calloc(RSS_CONTEXTS + 1, sizeof(*servers));
    static mbedtls_ssl_context c;
    struct meter unused = {0};
    if (servers == NULL || client_call(OP_SETUP, &c, NULL, 0) != 0)
        die("idle rss set-up", 0);
    static const unsigned char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    static const unsigned char resp[100];
    unsigned char scratch[RECORD_BYTES];
    long before_kib = 0;
    /* servers[0] is a warm-up: first-use state (PSA, the DRBG, the client) is not counted. */
    for (int i = 0; i <= RSS_CONTEXTS; i++) {
        if (i == 1)
            before_kib = rss_kib();
        w->c2s.head = w->c2s.tail = 0;
        w->s2c.head = w->s2c.tail = 0;
        servers[i] = malloc(sizeof(mbedtls_ssl_context));
        if (servers[i] == NULL)
            die("malloc", 0);
        mbedtls_ssl_init(servers[i]);
        int rc = mbedtls_ssl_setup(servers[i], &srv);
        if (rc == 0)
            rc = (int)client_call(OP_RESET, &c, NULL, 0);
        if (rc != 0)
            die("ssl_setup or session_reset", rc);
        mbedtls_ssl_set_bio(servers[i], &w->server_bio, bio_send, bio_recv, NULL);
        handshake(servers[i], &c, &unused);
        if (client_call(OP_WRITE, &c, req, sizeof(req) - 1) != (long)sizeof(req) - 1 ||
            drain(servers[i], scratch) != sizeof(req) - 1 ||
            mbedtls_ssl_write(servers[i], resp, sizeof(resp)) != (int)sizeof(resp) ||
            client_call(OP_DRAIN, &c, NULL, 0) != (long)sizeof(resp))
            die("idle exchange", 0);
    }
    long after_kib = rss_kib();
    if (before_kib > 0 && after_kib > 0)
        print_line("ceiling_idle_ssl_rss", (double)(after_kib - before_kib) * 1024 / RSS_CONTEXTS,
                   "bytes");

    client_call(OP_FREE, &c, NULL, 0);
    client_call(OP_QUIT, NULL, NULL, 0);
    pthread_join(r.thread, NULL);
    remote = NULL;
    for (int i = 0; i <= RSS_CONTEXTS; i++) {
        mbedtls_ssl_free(servers[i]);
        free(servers[i]);
    }
    free(servers);
    mbedtls_ssl_config_free(&srv);
    mbedtls_ssl_config_free(&cli);
}

int main(int argc, char **argv)
{
    double budget_s = 2.0; /* server CPU-seconds per figure */
    const char *parts = "mem,hs,rsa,rec13,rec12";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            budget_s = 0.5;
        } else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            budget_s = atof(argv[++i]);
        } else if (strcmp(argv[i], "--parts") == 0 && i + 1 < argc) {
            parts = argv[++i];
        } else if (strcmp(argv[i], "--rsa-key") == 0 && i + 1 < argc) {
            rsa_key_file = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--quick] [--budget S] [--parts mem,hs,rsa,rec13,rec12] "
                    "[--rsa-key PEM]\n", argv[0]);
            return 2;
        }
    }
#define PART(p) (strstr(parts, p) != NULL && (strcmp(p, "rsa") != 0 || rsa_key_file != NULL))
    psa_status_t st = psa_crypto_init(); /* TLS 1.3 in mbedTLS 3.6 runs on PSA */
    if (st != PSA_SUCCESS) {
        fprintf(stderr, "tls-ceiling: psa_crypto_init failed: %d\n", (int)st);
        return 1;
    }
    static struct world w;
    mbedtls_entropy_init(&w.entropy);
    mbedtls_ctr_drbg_init(&w.drbg);
    int rc = mbedtls_ctr_drbg_seed(&w.drbg, mbedtls_entropy_func, &w.entropy,
                                   (const unsigned char *)"tls-ceiling", 11);
    if (rc != 0)
        die("ctr_drbg_seed", rc);
    w.c2s.buf = malloc(PIPE_CAP);
    w.s2c.buf = malloc(PIPE_CAP);
    if (w.c2s.buf == NULL || w.s2c.buf == NULL)
        die("malloc", 0);
    w.server_bio = (struct bio){.rx = &w.c2s, .tx = &w.s2c};
    w.client_bio = (struct bio){.rx = &w.s2c, .tx = &w.c2s};
    make_cert(&w, &w.ec, 0);
    if (PART("rsa"))
        make_cert(&w, &w.rsa, 1);
#if defined(MBEDTLS_USE_PSA_CRYPTO)
    /* As moat holds them on a PSA build (tls/context.c): opaque, so signatures reach drivers. */
    make_opaque(&w.ec, 0);
    w.ec.key = &w.ec.opaque;
    if (PART("rsa")) {
        make_opaque(&w.rsa, 1);
        w.rsa.key = &w.rsa.opaque;
    }
#endif
    w.use = &w.ec;

    printf("# mbedTLS %s, server side only, per server CPU-second, budget %.1f s per figure\n",
           MBEDTLS_VERSION_STRING, budget_s);
    if (PART("mem")) {
        bench_idle_rss(&w);
        bench_idle_memory(&w);
    }
    if (PART("hs")) {
        bench_handshakes(&w, "ceiling_handshake_tls13_ecdsa_p256_x25519",
                         MBEDTLS_TLS1_3_AES_256_GCM_SHA384, MBEDTLS_SSL_VERSION_TLS1_3, budget_s);
        bench_handshakes(&w, "ceiling_handshake_tls12_ecdhe_ecdsa_aes128gcm_x25519",
                         MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                         MBEDTLS_SSL_VERSION_TLS1_2, budget_s);
    }
    if (PART("rsa")) {
        w.use = &w.rsa;
        bench_handshakes(&w, "ceiling_handshake_tls13_rsa2048_x25519",
                         MBEDTLS_TLS1_3_AES_256_GCM_SHA384, MBEDTLS_SSL_VERSION_TLS1_3, budget_s);
        w.use = &w.ec;
    }
    static const struct suite_case suites[] = {
        {"TLS_AES_256_GCM_SHA384", "TLS1-3-AES-256-GCM-SHA384", MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
         MBEDTLS_SSL_VERSION_TLS1_3},
        {"TLS_AES_128_GCM_SHA256", "TLS1-3-AES-128-GCM-SHA256", MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
         MBEDTLS_SSL_VERSION_TLS1_3},
        {"TLS_CHACHA20_POLY1305_SHA256", "TLS1-3-CHACHA20-POLY1305-SHA256",
         MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, MBEDTLS_SSL_VERSION_TLS1_3},
        {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
         MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, MBEDTLS_SSL_VERSION_TLS1_2},
        {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
         "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256",
         MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, MBEDTLS_SSL_VERSION_TLS1_2},
    };
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        if (PART(suites[i].version == MBEDTLS_SSL_VERSION_TLS1_2 ? "rec12" : "rec13"))
            bench_records(&w, &suites[i], budget_s);

    free(w.c2s.buf);
    free(w.s2c.buf);
    struct certkey *cks[] = {&w.ec, &w.rsa};
    for (int i = 0; i < (PART("rsa") ? 2 : 1); i++) {
        mbedtls_x509_crt_free(&cks[i]->cert);
        mbedtls_pk_free(&cks[i]->parsed);
        mbedtls_pk_free(&cks[i]->opaque);
    }
    mbedtls_ctr_drbg_free(&w.drbg);
    mbedtls_entropy_free(&w.entropy);
    mbedtls_psa_crypto_free();
    return 0;
}
