/* proxy/base/tcp.c: TCP_INFO; apart from libuv, whose headers bring glibc's struct tcp_info,
 * which lacks the field read here. */
#include "proxy/base/tcp.h"

#include <stddef.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

int moat_tcp_bytes_acked(int fd, uint64_t *out)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(info.tcpi_bytes_acked))
        return -1;
    *out = info.tcpi_bytes_acked;
    return 0;
}
