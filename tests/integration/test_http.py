"""HTTP/1.1 through moat: bodies both ways with checksums, framing, keep-alive, pipelining,
interim responses, malformed requests, header rewriting."""
import json
import os
import tempfile
import threading
import unittest

from harness import (IO_TIMEOUT, MoatTestCase, curl, pattern, read_response, recv_all,
                     sha256, tls_connect)

SIZES = (0, 1, 65537, 1 << 20, 100 << 20)


def headers_of(record):
    return {k.lower(): v for k, v in record["headers"]}


class TestHttp(MoatTestCase):
    def setUp(self):
        self.be = self.backend()
        self.m = self.moat("--backend", self.be.addr)

    def tearDown(self):
        self.stop_clean(self.m)

    def exchange(self, raw, method="GET", sock=None):
        """Sends raw bytes on a new (or given) TLS connection; returns one response."""
        s = sock or tls_connect(self.m.port)
        try:
            s.sendall(raw)
            return read_response(s.makefile("rb"), method)
        finally:
            if sock is None:
                s.close()

    def test_download_content_length_and_chunked(self):
        for size in SIZES:
            for kind in ("bytes", "chunked"):
                with self.subTest(size=size, kind=kind):
                    rc, out, err = curl(self.m.url("/%s/%d" % (kind, size)))
                    self.assertEqual(rc, 0, err)
                    self.assertEqual(len(out), size)
                    self.assertEqual(sha256(out), sha256(pattern(size)))

    def test_upload_content_length_and_chunked(self):
        with tempfile.NamedTemporaryFile() as f:
            for size in SIZES:
                f.seek(0)
                f.truncate()
                f.write(pattern(size))
                f.flush()
                for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
                    with self.subTest(size=size, chunked=bool(extra)):
                        rc, out, err = curl("--data-binary", "@" + f.name, *extra,
                                            "-H", "Content-Type: application/octet-stream",
                                            self.m.url("/up"))
                        self.assertEqual(rc, 0, err)
                        got = json.loads(out)
                        self.assertEqual(got["method"], "POST")
                        self.assertEqual(got["length"], size)
                        self.assertEqual(got["sha256"], sha256(pattern(size)))

    def test_head_204_304_have_no_body(self):
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        for method, path, status in (("HEAD", "/bytes/1000", 200), ("GET", "/status/204", 204),
                                     ("GET", "/status/304", 304)):
            with self.subTest(method=method, path=path):
                s.sendall(b"%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n" %
                          (method.encode(), path.encode()))
                st, h, body = read_response(f, method)
                self.assertEqual(st, status)
                self.assertEqual(body, b"")
                if method == "HEAD":
                    self.assertEqual(h["content-length"], ["1000"])
        # The connection is still in step: a normal request follows.
        s.sendall(b"GET /bytes/5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(read_response(f)[2], pattern(5))
        s.close()

    def test_expect_100_continue_is_relayed(self):
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        s.sendall(b"POST /e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        st, _, _ = read_response(f)
        self.assertEqual(st, 100)
        s.sendall(b"hello")
        st, _, body = read_response(f)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["length"], 5)
        s.close()

    def test_keep_alive_reuses_one_connection(self):
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        for i in range(20):
            s.sendall(b"GET /ka/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i)
            st, h, body = read_response(f)
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body)["path"], "/ka/%d" % i)
            self.assertNotIn("close", ",".join(h.get("connection", [])))
        s.close()

    def test_fifty_pipelined_requests_answer_in_order(self):
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        s.sendall(b"".join(b"GET /p/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i
                           for i in range(50)))
        for i in range(50):
            st, _, body = read_response(f)
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(body)["path"], "/p/%d" % i)
        s.close()

    def test_http10_closes_unless_keep_alive_asked(self):
        s = tls_connect(self.m.port)
        s.sendall(b"GET /old HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = recv_all(s)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"))
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        for _ in range(2):
            s.sendall(b"GET /old HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            st, h, body = read_response(f)
            self.assertEqual(st, 200)
            self.assertIn("keep-alive", ",".join(h.get("connection", [])).lower())
        s.close()

    def test_malformed_requests_get_400_and_close(self):
        cases = (b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                 b"GET / HTTP/1.1\r\n\r\n",
                 b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
        for raw in cases:
            with self.subTest(raw=raw):
                s = tls_connect(self.m.port)
                s.sendall(raw)
                f = s.makefile("rb")
                st, h, body = read_response(f)
                self.assertIn(st, (400, 501))
                self.assertIn("close", ",".join(h.get("connection", [])))
                self.assertEqual(f.read(), b"")  # then the connection ends
                s.close()
        self.assertEqual(self.be.seen, [])  # nothing reached the backend

    def test_forwarding_headers_are_set_not_spoofed(self):
        st, _, body = self.exchange(b"GET /fw HTTP/1.1\r\nHost: example.test\r\n"
                                    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\n"
                                    b"X-Forwarded-Host: evil\r\n\r\n")
        h = headers_of(json.loads(body))
        self.assertEqual(h["host"], "example.test")
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "https")
        self.assertEqual(h["x-forwarded-host"], "example.test")

    def test_hop_by_hop_headers_are_not_forwarded(self):
        st, _, body = self.exchange(b"GET /hop-req HTTP/1.1\r\nHost: localhost\r\n"
                                    b"Connection: keep-alive, X-Private\r\nX-Private: 1\r\n"
                                    b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                                    b"TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n"
                                    b"X-Ordinary: 1\r\n\r\n")
        self.assertEqual(st, 200)
        h = headers_of(json.loads(body))
        for name in ("x-private", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-ordinary"], "1")
        self.assertNotIn("x-private", h.get("connection", "").lower())
        st, h, body = self.exchange(b"GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(st, 200)
        for name in ("x-secret", "keep-alive", "proxy-connection", "upgrade"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-kept"], ["yes"])


class TestConcurrentUploads(MoatTestCase):
    def test_many_clients_upload_right_after_their_handshakes(self):
        # New clients whose handshakes wait their turn keep sending: moat must hold back
        # (stop reading), not fail them as flooding.
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "1")
        body = pattern(1 << 20)
        results = []

        def upload(n):
            try:
                s = tls_connect(m.port)
                s.sendall(b"POST /c/%d HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                          % (n, len(body)) + body)
                st, _, data = read_response(s.makefile("rb"))
                s.close()
                results.append((st, json.loads(data)["sha256"]))
            except Exception as e:  # counted below
                results.append((repr(e), None))

        threads = [threading.Thread(target=upload, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(results, [(200, sha256(body))] * 24)
        self.assertNotIn("faster than it is served", m.stderr())
        self.stop_clean(m)


class TestTrustedProxy(MoatTestCase):
    def test_trusted_front_proxy_chain_is_extended(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--trusted-proxy", "127.0.0.0/8")
        s = tls_connect(m.port)
        s.sendall(b"GET /t HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
        st, _, body = read_response(s.makefile("rb"))
        s.close()
        h = headers_of(json.loads(body))
        self.assertEqual(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1")
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
