#!/usr/bin/env python3
"""bench/idle-conns.py: holds N idle TLS connections to a proxy so bench/run.sh can read its RSS.

Usage: idle-conns.py HOST PORT N
Driven over stdin/stdout, one line each way, so the caller reads the proxy's memory at each step:
  1. opens N TLS connections (full handshakes, no resumption), prints "handshaken N"
  2. on the line "request": sends one keep-alive GET /small on each, reads the whole response,
     prints "requested N"
  3. on the line "quit" (or end of input): closes them all and exits.
Every socket operation times out after 10 s, and the caller bounds the whole run.
"""
import socket
import ssl
import sys

TIMEOUT_S = 10.0


def read_response(conn):
    """Reads one response with a Content-Length body; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return int(head.split(b" ", 2)[1])


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a throwaway self-signed certificate; loopback only
    ctx.set_alpn_protocols(["http/1.1"])
    conns = []
    try:
        for _ in range(count):
            raw = socket.create_connection((host, port), timeout=TIMEOUT_S)
            conns.append(ctx.wrap_socket(raw, server_hostname="localhost"))
        print(f"handshaken {len(conns)}", flush=True)
        if sys.stdin.readline().strip() != "request":
            return
        request = f"GET /small HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        ok = 0
        for conn in conns:
            conn.sendall(request)
            ok += read_response(conn) == 200
        print(f"requested {ok}", flush=True)
        sys.stdin.readline()  # "quit" or end of input
    finally:
        for conn in conns:
            conn.close()


if __name__ == "__main__":
    main()
