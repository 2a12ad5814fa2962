"""A client that stops reading is cut off after --send-timeout, with its backend connection, and
logged and counted; one that reads slowly but steadily is never cut."""
import re
import socket
import socketserver
import time

from harness import IO_TIMEOUT, Certs, MoatTestCase, pattern, read_response, tls_connect
from test_admin import ADMIN, admin_get, parse_metrics

CUT = re.compile(r"info w\d+ c\d+ (127\.0\.0\.1:\d+) \S+ client took no bytes for (\d+) ms "
                 r"\(--send-timeout\)")


class Flood(socketserver.StreamRequestHandler):
    """GET /flood/N: a response of N pattern bytes, written as fast as moat takes them. Records
    how each connection's writing ended: "cut" when moat closed it, "done" when all went."""

    def handle(self):
        line = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        n = int(line.split()[1].split(b"/")[2])
        block = pattern(65536)
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            for off in range(0, n, len(block)):
                self.wfile.write(block[:min(len(block), n - off)])
            self.wfile.flush()
            self.server.ended.append("done")
        except OSError:
            self.server.ended.append("cut")


class TestSendTimeout(MoatTestCase):
    def setUp(self):
        self.flood = self.raw_backend(Flood, ended=[])

    def wait_for(self, what, check, timeout=IO_TIMEOUT * 2):
        deadline = time.monotonic() + timeout
        while not check():
            self.assertLess(time.monotonic(), deadline, "waited in vain for " + what)
            time.sleep(0.05)

    def test_clients_that_stop_reading_are_cut_off(self):
        m = self.moat("--backend", self.flood.addr, "--send-timeout", "1s", "--admin",
                      "127.0.0.1:0")
        admin = int(ADMIN.search(m.stderr()).group(1))
        clients = []
        started = time.monotonic()
        for _ in range(20):  # each asks for 200 MB, then never reads a byte
            s = tls_connect(m.port)
            s.sendall(b"GET /flood/209715200 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            clients.append(s)
            self.addCleanup(s.close)
        self.wait_for("20 cut-off lines", lambda: len(CUT.findall(m.stderr())) >= 20)
        elapsed = time.monotonic() - started
        cuts = CUT.findall(m.stderr())
        self.assertEqual(len(cuts), 20)
        # Each was cut for its own stall, named by its own address, no sooner than the timeout.
        self.assertEqual(sorted(a for a, _ in cuts),
                         sorted("127.0.0.1:%d" % s.getsockname()[1] for s in clients))
        self.assertTrue(all(int(ms) >= 1000 for _, ms in cuts), cuts)
        self.assertLess(elapsed, 15, "cut off within the timeout (and its checks), not later")
        # The backend connections went with them: every write of the backend's failed.
        self.wait_for("20 backend connections closed", lambda: len(self.flood.ended) >= 20)
        self.assertEqual(self.flood.ended, ["cut"] * 20)
        metrics = parse_metrics(admin_get(admin, "/metrics")[1].decode())
        self.assertEqual(metrics[("moat_client_timeouts_total", frozenset({("kind", "send")}))],
                         20)
        # The clients see the end too (no response completes), and moat serves others.
        for s in clients:
            s.settimeout(IO_TIMEOUT)
            try:
                while s.recv(1 << 20):
                    pass
            except OSError:
                pass  # a reset: moat closed with our unread bytes in its socket
        s = tls_connect(m.port)
        s.sendall(b"GET /flood/1000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        st, _, body = read_response(s.makefile("rb"))
        self.assertEqual((st, body), (200, pattern(1000)))
        s.close()
        self.stop_clean(m)

    def test_slow_but_steady_reader_is_never_cut(self):
        # A read every 0.1 s, for 4 s (8 timeouts): the backend offers far more than the client
        # takes, so moat always has bytes waiting for it, yet every check sees some taken. The
        # kernel's buffers make the socket writable again only in bursts seconds apart: what
        # counts is what the client acknowledged.
        m = self.moat("--backend", self.flood.addr, "--send-timeout", "500ms")
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # keep the kernel's share small
        raw.settimeout(IO_TIMEOUT)
        raw.connect(("127.0.0.1", m.port))
        s = Certs.client_context().wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(s.close)
        s.sendall(b"GET /flood/209715200 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        ends = time.monotonic() + 4
        while time.monotonic() < ends:
            chunk = s.recv(65536)
            self.assertTrue(chunk, "moat ended the download: " + m.stderr()[-1000:])
            got += chunk
            time.sleep(0.1)
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertGreater(len(body), 200000)
        self.assertEqual(body, pattern(len(body)))
        self.assertNotIn("--send-timeout", m.stderr())
        s.close()
        self.stop_clean(m)
