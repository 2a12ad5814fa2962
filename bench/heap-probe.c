/* bench/heap-probe.c: an LD_PRELOAD helper that lets bench/run.sh read how many malloc heap bytes
 * a running process holds (glibc mallinfo2(), every arena), without changing the process.
 *
 * RSS cannot tell moat's own bytes per connection from mbedTLS's: pages that were allocated but
 * never written cost no RSS, so RSS per connection can even come out below the size of one
 * mbedTLS context. The heap count is exact and is what bench/tls-ceiling measures for mbedTLS.
 *
 * At load it starts one thread, with every signal blocked so the process's own signal handling
 * is unchanged, that blocks opening the FIFO named by $HEAP_PROBE_FIFO; for each line written to
 * it, it appends "heap_bytes N" to the file named by $HEAP_PROBE_OUT. It never calls malloc
 * itself, so it adds no arena and no heap bytes to what it reports.
 * Build: cc -O2 -shared -fPIC -pthread -o heap-probe.so heap-probe.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mallinfo2() */
#endif
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *fifo_path; /* borrowed from the environment */
static const char *out_path;

static void answer(void)
{
    struct mallinfo2 mi = mallinfo2();
    char line[64];
    int len = snprintf(line, sizeof(line), "heap_bytes %zu\n", mi.uordblks + mi.hblkhd);
    int fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)len) != len) {
        /* nothing to do: the script sees no answer and reports it */
    }
    close(fd);
}

static void *probe_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = open(fifo_path, O_RDONLY); /* blocks until the script writes */
        if (fd < 0)
            return NULL;
        char buf[64];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\n')
                    answer();
        close(fd);
    }
}

__attribute__((constructor)) static void probe_start(void)
{
    fifo_path = getenv("HEAP_PROBE_FIFO");
    out_path = getenv("HEAP_PROBE_OUT");
    if (fifo_path == NULL || out_path == NULL)
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits the full mask */
    pthread_t thread;
    if (pthread_create(&thread, NULL, probe_main, NULL) == 0)
        pthread_detach(thread);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
