/* proxy/base/tcp.h: what the kernel knows of a TCP connection that libuv does not say. */
#ifndef MOAT_BASE_TCP_H
#define MOAT_BASE_TCP_H
#include <stdint.h>

/* Bytes of what we sent that the peer has acknowledged (TCP_INFO's tcpi_bytes_acked, Linux
 * 4.1 and later): it grows exactly when the peer takes data, which the socket's writability does
 * not show (the kernel wakes a writer only once half its send buffer is free). 0, or -1 when
 * the kernel cannot tell. */
int moat_tcp_bytes_acked(int fd, uint64_t *out);

#endif
