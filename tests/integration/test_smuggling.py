"""Request smuggling and ambiguity: each payload goes to moat on its own TLS connection; the
backend records every byte it receives. Ambiguous requests are refused (4xx/5xx, then close)
and the backend receives nothing at all; the few accepted ones reach it in exactly one
unambiguous form."""
import re
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
    # An upgrade with a body: which bytes are body and which belong to the tunnel is where a
    # front end and a backend part ways.
    "upgrade-with-length-body": b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 32\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade-with-chunked-body": b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "upgrade-h2c-with-body": b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello",
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
    """Records every connection as it is accepted and every byte of the one request it carries
    (framed by its head: Content-Length or chunked), then answers 200 and closes."""

    def setup(self):
        self.server.accepted.append(self.client_address)

    def read_request(self):
        f = self.request.makefile("rb")
        data = b""
        length, chunked = 0, False
        while True:
            line = f.readline()
            if not line:
                return data
            data += line
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not chunked:
            return data + f.read(length)
        while True:
            line = f.readline()
            data += line
            size = int(line.split(b";")[0], 16) if line.strip() else 0
            if size == 0:
                while line not in (b"\r\n", b""):
                    line = f.readline()
                    data += line
                return data
            data += f.read(size + 2)

    def handle(self):
        self.request.settimeout(15)
        try:
            data = self.read_request()
        except (OSError, ValueError):
            data = b"<unreadable>"
        self.server.received.append(data)
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except OSError:
            pass


class TestSmuggling(MoatTestCase):
    def setUp(self):
        self.rec = self.raw_backend(Recorder, received=[], accepted=[])
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
        # A sentinel request last: moat (one worker) handles connections in order, so once the
        # sentinel's connection reached the backend, any connection made for a payload before it
        # has been accepted too.
        st, h, _ = self.send(b"GET /sentinel HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        self.assertEqual(st, 200)
        self.wait_received(1)
        self.assertEqual(len(self.rec.accepted), 1, "only the sentinel reached the backend")
        self.assertEqual(len(self.rec.received), 1)
        self.assertTrue(self.rec.received[0].startswith(b"GET /sentinel HTTP/1.1\r\n"),
                        self.rec.received[0])
        self.stop_clean(self.m)

    def wait_received(self, n):
        deadline = time.monotonic() + 10
        while len(self.rec.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)

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
                self.wait_received(before + 1)
                self.assertEqual([GENERATED_ID.sub(b"X-Request-Id: ID\r\n", r)
                                  for r in self.rec.received[before:]],
                                 [expected.replace(b"%FWD%", FORWARDED)])
        self.stop_clean(self.m)
