"""Every timeout and limit, set small on the command line: what the client gets, and that moat
keeps serving others meanwhile (slowloris)."""
import json
import socket
import ssl
import threading
import time

from harness import (IO_TIMEOUT, Certs, MoatTestCase, curl, read_response, recv_all,
                     tls_connect)


def status_of(m, raw):
    s = tls_connect(m.port)
    s.sendall(raw)
    st, h, _ = read_response(s.makefile("rb"))
    s.close()
    return st, h


class TestTimeouts(MoatTestCase):
    def setUp(self):
        self.be = self.backend()

    def test_handshake_timeout(self):
        m = self.moat("--backend", self.be.addr, "--handshake-timeout", "400ms")
        with socket.create_connection(("127.0.0.1", m.port), timeout=IO_TIMEOUT) as s:
            started = time.monotonic()
            self.assertEqual(s.recv(100), b"")  # closed without a word
            self.assertLess(time.monotonic() - started, 3)
        self.assertIn("tls handshake timeout", m.stderr())
        self.stop_clean(m)

    def test_head_timeout_gives_408(self):
        m = self.moat("--backend", self.be.addr, "--head-timeout", "500ms")
        s = tls_connect(m.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: loc")
        started = time.monotonic()
        st, h, _ = read_response(s.makefile("rb"))
        self.assertEqual(st, 408)
        self.assertEqual(h["connection"], ["close"])
        self.assertLess(time.monotonic() - started, 3)
        s.close()
        self.assertIn("request head timeout", m.stderr())
        self.stop_clean(m)

    def test_idle_keep_alive_timeout_closes_quietly(self):
        m = self.moat("--backend", self.be.addr, "--idle-timeout", "500ms")
        s = tls_connect(m.port)
        s.sendall(b"GET /once HTTP/1.1\r\nHost: localhost\r\n\r\n")
        f = s.makefile("rb")
        self.assertEqual(read_response(f)[0], 200)
        started = time.monotonic()
        self.assertEqual(f.read(), b"")  # orderly end after the idle time
        self.assertLess(time.monotonic() - started, 3)
        s.close()
        self.stop_clean(m)

    def test_body_timeout_gives_408(self):
        m = self.moat("--backend", self.be.addr, "--body-timeout", "500ms")
        s = tls_connect(m.port)
        s.sendall(b"POST /u HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        st, h, _ = read_response(s.makefile("rb"))
        self.assertEqual(st, 408)
        s.close()
        self.assertIn("request body stalled", m.stderr())
        self.stop_clean(m)

    def test_slow_but_steady_upload_is_not_cut(self):
        m = self.moat("--backend", self.be.addr, "--body-timeout", "600ms", "--head-timeout",
                      "600ms")
        s = tls_connect(m.port)
        s.sendall(b"POST /steady HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):  # 2 s in all, never 600 ms of silence
            s.sendall(b"x")
            time.sleep(0.2)
        st, _, body = read_response(s.makefile("rb"))
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["length"], 10)
        s.close()
        self.stop_clean(m)

    def test_backend_timeout_gives_504(self):
        m = self.moat("--backend", self.be.addr, "--backend-timeout", "500ms")
        rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", m.url("/slow/3"))
        self.assertEqual(out, b"504")
        self.stop_clean(m)

    def test_connect_timeout_gives_504(self):
        # A listener that never accepts, its backlog already full: SYNs go unanswered.
        sink = socket.socket()
        sink.bind(("127.0.0.1", 0))
        sink.listen(0)
        self.addCleanup(sink.close)
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(sink.getsockname())
            fillers.append(c)
            self.addCleanup(c.close)
        time.sleep(0.2)
        m = self.moat("--backend", "127.0.0.1:%d" % sink.getsockname()[1], "--connect-timeout",
                      "300ms")
        started = time.monotonic()
        rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", m.url("/c"))
        self.assertEqual(out, b"504")
        self.assertLess(time.monotonic() - started, 5)
        self.stop_clean(m)

    def test_pool_idle_timeout_retires_backend_connections(self):
        m = self.moat("--backend", self.be.addr, "--workers", "1", "--pool-idle-timeout",
                      "300ms")
        curl(m.url("/p1"))
        curl(m.url("/p2"))  # at once: the pooled connection
        time.sleep(0.8)
        curl(m.url("/p3"))  # after the pool timeout: a new one
        ports = [r["peer_port"] for r in self.be.seen]
        self.assertEqual(ports[0], ports[1])
        self.assertNotEqual(ports[1], ports[2])
        self.stop_clean(m)

    def test_slowloris_does_not_starve_others(self):
        m = self.moat("--backend", self.be.addr, "--head-timeout", "2s", "--workers", "1")
        cut_off = []

        def trickle(n):
            s = None
            try:
                s = tls_connect(m.port)
                s.sendall(b"GET /slow-loris/%d HTTP/1.1\r\n" % n)
                for _ in range(60):  # a header byte every 0.1 s, for at most 6 s
                    s.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                cut_off.append(n)  # moat ended it: that is the point
            finally:
                if s is not None:
                    s.close()

        threads = [threading.Thread(target=trickle, args=(n,)) for n in range(200)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        worst = 0.0
        for i in range(20):  # a normal client meanwhile
            started = time.monotonic()
            rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", m.url("/normal/%d" % i))
            worst = max(worst, time.monotonic() - started)
            self.assertEqual(out, b"200", err)
        for t in threads:
            t.join(30)
        self.assertLess(worst, 2.0)
        self.assertGreaterEqual(len(cut_off), 190)  # nearly all: moat cut them, not the loop
        self.assertGreaterEqual(m.stderr().count("request head timeout"), 190)
        self.assertEqual([r["path"] for r in self.be.seen if "loris" in r["path"]], [])
        self.stop_clean(m)


class TestLimits(MoatTestCase):
    def setUp(self):
        self.be = self.backend()
        self.m = self.moat("--backend", self.be.addr, "--max-head-size", "2k", "--max-headers",
                           "20", "--max-target-size", "256", "--max-body-size", "1k")

    def test_head_size_headers_target_and_body(self):
        big_head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
        many = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
            b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n"
        long_target = b"GET /" + b"t" * 400 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
        big_body = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n"
        big_chunked = (b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       b"400\r\n" + b"b" * 1024 + b"\r\n400\r\n" + b"b" * 1024 + b"\r\n0\r\n\r\n")
        for raw, want in ((big_head, 431), (many, 431), (long_target, 414), (big_body, 413),
                          (big_chunked, 413)):
            with self.subTest(want=want, start=raw[:30]):
                st, h = status_of(self.m, raw)
                self.assertEqual(st, want)
                self.assertEqual(h["connection"], ["close"])
        # Within the limits everything passes; and nothing of the refused ones but the chunked
        # body's head reached the backend (its connection was then cut, never pooled).
        rc, out, err = curl("--data-binary", "x" * 1000, self.m.url("/ok"))
        self.assertEqual(json.loads(out)["length"], 1000)
        self.assertEqual([r["path"] for r in self.be.seen], ["/ok"])
        self.stop_clean(self.m)


class TestBackendConnections(MoatTestCase):
    def test_requests_wait_for_a_free_backend_connection(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "1", "--max-backend-connections", "1")
        codes = []
        threads = [threading.Thread(target=lambda: codes.append(
            curl("-o", "/dev/null", "-w", "%{http_code}", m.url("/slow/0.4"))[1]))
            for i in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(codes, [b"200"] * 4)
        self.assertGreaterEqual(time.monotonic() - started, 1.5)  # one after another
        self.assertEqual(len({r["peer_port"] for r in be.seen}), 1)  # over one connection
        self.stop_clean(m)

    def test_waiting_too_long_gives_503(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "1", "--max-backend-connections", "1",
                      "--connect-timeout", "300ms")
        slow = threading.Thread(target=lambda: curl(m.url("/slow/2")))
        slow.start()
        deadline = time.monotonic() + 10
        while not be.seen and time.monotonic() < deadline:  # /slow/2 holds the only slot
            time.sleep(0.02)
        self.assertEqual([r["path"] for r in be.seen], ["/slow/2"])
        rc, out, err = curl("-i", m.url("/second"))
        self.assertTrue(out.startswith(b"HTTP/1.1 503 "), out[:100])
        self.assertIn(b"Retry-After: 1", out)
        slow.join(30)
        self.assertIn("--max-backend-connections", m.stderr())
        self.stop_clean(m)


class TestMaxConnections(MoatTestCase):
    def test_accepting_pauses_then_resumes(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "1", "--max-connections", "3")
        held = [tls_connect(m.port) for _ in range(3)]
        # The fourth connects (kernel backlog) but moat does not take it yet: no handshake.
        raw = socket.create_connection(("127.0.0.1", m.port), timeout=IO_TIMEOUT)
        ctx = Certs.client_context()
        waiting = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        waiting.settimeout(1.0)
        with self.assertRaises((socket.timeout, ssl.SSLError, TimeoutError)):
            waiting.do_handshake()
        self.assertIn("accepting paused", m.stderr())
        held.pop().close()  # a slot frees: the waiting client is taken
        waiting.close()
        s = tls_connect(m.port)
        s.sendall(b"GET /in HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(read_response(s.makefile("rb"))[0], 200)
        s.close()
        for h in held:
            h.close()
        self.assertIn("accepting resumed", m.stderr())
        self.stop_clean(m)
