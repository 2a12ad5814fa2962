"""Request smuggling and ambiguity: each payload goes to moat on its own TLS connection; the
backend records every byte it receives. Ambiguous requests are refused (4xx/5xx, then close)
and the backend receives nothing at all; the few accepted ones reach it in exactly one
unambiguous form."""
import re
import socket
import socketserver
import time

from harness import MoatTestCase, read_response, tls_connect

REFUSED = {
    # Content-Length and Transfer-Encoding together, and every odd Transfer-Encoding.
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-then-identity": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-identity": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
    "te-unknown": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    # Several or malformed Content-Length values.
    "cl-two-values": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-same-twice": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl-plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "cl-negative": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    "cl-hex": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
    "cl-inner-space": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello",
    "cl-overflow": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    # Line structure: obs-fold, bare LF, control bytes, whitespace before the colon.
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
    "obs-fold-first-line": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare-lf-one-header": b"GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    "cr-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "tab-before-colon": b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
    "bad-header-name": b"GET / HTTP/1.1\r\nHost: a\r\nX-A(b): 1\r\n\r\n",
    "empty-header-name": b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n",
    # Chunk sizes and extensions.
    "chunk-size-not-hex": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    "chunk-ext-control-byte": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01b\r\nhello\r\n0\r\n\r\n",
    "chunk-data-overrun": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n",
    "chunk-lf-only": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    # Host ambiguity, versions, methods.
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "absolute-form-host-mismatch": b"GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "http-1-2": b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "bad-method": b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "connect": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
}

# Accepted, and what the backend must receive for them, byte for byte.
ACCEPTED = {
    # A request hidden in a body stays body.
    "request-in-body": (
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 32\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 32\r\n" + b"%FWD%" +
        b"\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n"),
    # Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1): served once, then the connection closes.
    "te-on-http10": (
        b"POST /b HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" + b"%FWD%" +
        b"\r\n3\r\nabc\r\n0\r\n\r\n"),
}
FORWARDED = (b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
             b"X-Request-Id: ID\r\nVia: 1.1 moat\r\n")
GENERATED_ID = re.compile(rb"X-Request-Id: [0-9a-f]{32}\r\n")  # made by moat: ID above


class Recorder(socketserver.BaseRequestHandler):
    """Records every byte of a connection; once nothing came for 0.3 s, answers 200 and closes."""

    def handle(self):
        data = b""
        self.request.settimeout(0.3)
        while True:
            try:
                chunk = self.request.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        self.server.received.append(data)
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass


class TestSmuggling(MoatTestCase):
    def setUp(self):
        self.rec = self.raw_backend(Recorder, received=[])
        self.m = self.moat("--backend", self.rec.addr, "--workers", "1")

    def send(self, raw, expect_close=True):
        s = tls_connect(self.m.port)
        s.sendall(raw)
        f = s.makefile("rb")
        st, h, body = read_response(f)
        rest = f.read() if expect_close else b""  # the connection must end after the answer
        s.close()
        return st, h, rest

    def test_ambiguous_requests_are_refused_and_reach_nobody(self):
        self.assertGreaterEqual(len(REFUSED), 25)
        for name, raw in REFUSED.items():
            with self.subTest(payload=name):
                st, h, rest = self.send(raw)
                self.assertGreaterEqual(st, 400)
                self.assertLess(st, 600)
                self.assertEqual(h.get("connection"), ["close"])
                self.assertEqual(rest, b"")
        time.sleep(0.5)
        self.assertEqual(self.rec.received, [])  # not one byte reached the backend
        self.stop_clean(self.m)

    def test_accepted_requests_reach_the_backend_in_one_form(self):
        for name, (raw, expected) in ACCEPTED.items():
            with self.subTest(payload=name):
                before = len(self.rec.received)
                closes = b"HTTP/1.0" in raw.split(b"\r\n", 1)[0]
                st, h, rest = self.send(raw, expect_close=closes)
                self.assertEqual(st, 200)
                if closes:  # faulty HTTP/1.0 framing: nothing after this request is read
                    self.assertEqual(h.get("connection"), ["close"])
                    self.assertEqual(rest, b"")
                deadline = time.monotonic() + 5
                while len(self.rec.received) == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.assertEqual([GENERATED_ID.sub(b"X-Request-Id: ID\r\n", r)
                                  for r in self.rec.received[before:]],
                                 [expected.replace(b"%FWD%", FORWARDED)])
        self.stop_clean(self.m)
