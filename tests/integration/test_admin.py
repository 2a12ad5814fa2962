"""The admin listener: /metrics counts exactly the traffic sent, /healthz, /readyz before and
after every backend is marked down, hostile input on the admin port, a taken admin port."""
import re
import socket
import ssl
import time
import unittest

from harness import (IO_TIMEOUT, Certs, EchoHandler, Moat, MoatTestCase, free_port,
                     read_response, recv_all, tls_connect, write_config)

ADMIN = re.compile(r" main admin listening on http://127\.0\.0\.1:(\d+)")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class NoKeepAlive(EchoHandler):
    """EchoHandler that closes after every response (so moat pools nothing and a stopped
    backend refuses at once), and closes without answering on /close."""

    def end_headers(self):
        self.send_header("Connection", "close")
        super().end_headers()

    def handle_any(self):
        if self.path == "/close":
            self.close_connection = True
            return
        super().handle_any()

    do_GET = do_POST = do_HEAD = handle_any


class AlwaysFails(EchoHandler):
    """Every answer is a 500: a backend passive health takes out."""

    def handle_any(self):
        self.reply(500, b"no\n")

    do_GET = do_POST = handle_any


def be(addr):
    """The labels of a backend given by its address (its name and address are the same)."""
    return ("backend", addr), ("address", addr)


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> {(name, frozenset(labels)): value}; checks that every
    sample's family was announced by # HELP and # TYPE lines first."""
    out = {}
    typed = {}
    helped = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise AssertionError("not a sample line: %r" % line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and typed.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        if family not in typed or family not in helped:
            raise AssertionError("sample before its # HELP / # TYPE: %r" % line)
        if not name.startswith("moat_"):
            raise AssertionError("metric without the moat_ prefix: %r" % line)
        key = (name, frozenset(LABEL.findall(labels)))
        out[key] = float(value)
    return out


def admin_request(port, raw, timeout=IO_TIMEOUT):
    """Sends raw bytes to the admin port; returns everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return recv_all(s)


def admin_get(port, path, method="GET"):
    """(status, body) of one admin request."""
    data = admin_request(port, b"%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                         % (method.encode(), path.encode()))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Client:
    """TLS connections that resume the previous connection's session when they can, counting
    what the client itself saw: full handshakes, resumed ones, TCP connections."""

    def __init__(self, port, tls12=False):
        self.port = port
        self.ctx = Certs.client_context()
        if tls12:
            self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.session = None
        self.full = self.resumed = self.connections = 0

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
        self.connections += 1
        s = self.ctx.wrap_socket(raw, server_hostname="localhost", session=self.session)
        if s.session_reused:
            self.resumed += 1
        else:
            self.full += 1
        return s

    def request(self, raw):
        """One request on a new connection: (status, body)."""
        s = self.connect()
        try:
            s.sendall(raw)
            status, _, body = read_response(s.makefile("rb"))
            # TLS 1.3 tickets arrive after the handshake: the session is complete only now.
            self.session = s.session
            try:
                # An orderly close: OpenSSL forgets TLS 1.2 sessions of connections that end
                # without close_notify.
                s.unwrap()
            except (OSError, ssl.SSLError):
                pass
            return status, body
        finally:
            s.close()

    def handshake_only(self):
        """A connection that only shakes hands, then closes in order."""
        s = self.connect()
        try:
            s.unwrap()
        except (OSError, ssl.SSLError):
            pass
        s.close()

    def get(self, path):
        return self.request(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                            % path.encode())


class TestAdmin(MoatTestCase):
    def start(self, *args):
        m = self.moat("--admin", "127.0.0.1:0", *args)
        found = ADMIN.search(m.stderr())
        self.assertIsNotNone(found, m.stderr())
        return m, int(found.group(1))

    def scrape(self, port):
        status, body = admin_get(port, "/metrics")
        self.assertEqual(status, 200, body)
        return parse_metrics(body.decode())

    def wait_metrics(self, port, want):
        """Scrapes until every (name, labels) in want has its value (counters are bumped on
        the workers' threads, a moment before or after the client sees its answer)."""
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            got = self.scrape(port)
            wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            if not wrong or time.monotonic() > deadline:
                return got, wrong
            time.sleep(0.05)

    def test_per_backend_series(self):
        """Each backend's own responses, its state and ejections, its connections."""
        good, bad = self.backend(), self.backend(handler=AlwaysFails)
        m, admin = self.start("--backend", good.addr, "--backend", bad.addr, "--workers", "2")
        client = Client(m.port)
        for _ in range(20):
            client.get("/")
        pool = ("pool", "default")
        want = {
            ("moat_backend_responses_total",
             frozenset([pool, *be(bad.addr), ("code", "5xx")])): 5,
            ("moat_backend_responses_total",
             frozenset([pool, *be(good.addr), ("code", "2xx")])): 15,
            ("moat_backend_state", frozenset([pool, *be(bad.addr),
                                              ("state", "ejected")])): 1,
            ("moat_backend_state", frozenset([pool, *be(good.addr),
                                              ("state", "up")])): 1,
            ("moat_backend_ejections_total", frozenset([pool, *be(bad.addr)])): 1,
        }
        got, wrong = self.wait_metrics(admin, want)
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")
        good_l = frozenset([pool, *be(good.addr)])
        self.assertGreaterEqual(got[("moat_backend_connections", good_l)], 1)
        # The time to each response head, as a histogram: cumulative, +Inf is the count.
        self.assertEqual(got[("moat_backend_first_byte_seconds_count", good_l)], 15)
        self.assertEqual(got[("moat_backend_first_byte_seconds_bucket",
                              good_l | {("le", "+Inf")})], 15)
        self.assertGreaterEqual(got[("moat_backend_first_byte_seconds_bucket",
                                     good_l | {("le", "10")})],
                                got[("moat_backend_first_byte_seconds_bucket",
                                     good_l | {("le", "0.005")})])
        self.assertGreater(got[("moat_backend_first_byte_seconds_sum", good_l)], 0)
        self.stop_clean(m)

    def test_counters_match_traffic_and_readiness(self):
        backend = self.backend(handler=NoKeepAlive)
        m, admin = self.start("--backend", backend.addr, "--workers", "2",
                              "--backend-timeout", "1s")
        self.assertEqual(admin_get(admin, "/healthz"), (200, b"ok\n"))
        status, body = admin_get(admin, "/readyz")
        self.assertEqual(status, 200, body)

        c13, c12 = Client(m.port), Client(m.port, tls12=True)
        for _ in range(4):
            self.assertEqual(c13.get("/")[0], 200)
        for _ in range(3):
            self.assertEqual(c12.get("/")[0], 200)
        for _ in range(3):
            self.assertEqual(c13.get("/status/404")[0], 404)
        self.assertEqual(c13.get("/close")[0], 502)    # the backend hung up without answering
        self.assertEqual(c13.get("/slow/3")[0], 504)   # silent past --backend-timeout
        self.assertEqual(c13.request(b"GET / HTTP/1.1\r\nHost: localhost\r\nno colon\r\n\r\n")[0],
                         400)
        # A handshake that fails: a TLS record header, then garbage.
        with socket.create_connection(("127.0.0.1", m.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"\x16\x03\x01\x00\x10" + b"\xee" * 16)
            recv_all(s)
        # Shake hands (without requests) until each client has resumed once.
        for _ in range(40):
            if c13.resumed and c12.resumed:
                break
            (c12 if not c12.resumed else c13).handshake_only()
        self.assertGreater(c13.resumed, 0, "the TLS 1.3 client never resumed")
        self.assertGreater(c12.resumed, 0, "the TLS 1.2 client never resumed")

        pool = ("pool", "default")
        want = {
            ("moat_requests_total", frozenset([pool, ("code", "1xx")])): 0,
            ("moat_requests_total", frozenset([pool, ("code", "2xx")])): 7,
            ("moat_requests_total", frozenset([pool, ("code", "3xx")])): 0,
            ("moat_requests_total", frozenset([pool, ("code", "4xx")])): 4,
            ("moat_requests_total", frozenset([pool, ("code", "5xx")])): 2,
            ("moat_request_duration_seconds_count", frozenset([pool])): 13,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "connect_failed")])): 0,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "connect_timeout")])): 0,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "bad_gateway")])): 1,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "gateway_timeout")])): 1,
            ("moat_upstream_retries_total", frozenset([pool, ("reason", "connect")])): 0,
            ("moat_upstream_retries_total", frozenset([pool, ("reason", "stale")])): 0,
            ("moat_tls_handshakes_total", frozenset([("result", "full")])):
                c13.full + c12.full,
            ("moat_tls_handshakes_total", frozenset([("result", "resumed")])):
                c13.resumed + c12.resumed,
            ("moat_tls_handshakes_total", frozenset([("result", "failed")])): 1,
            ("moat_connections_accepted_total", frozenset()): c13.connections + c12.connections + 1,
            ("moat_connections_open", frozenset()): 0,
            ("moat_backend_up", frozenset([pool, *be(backend.addr)])): 1,
            ("moat_workers", frozenset()): 2,
        }
        got, wrong = self.wait_metrics(admin, want)
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")
        # The histogram: cumulative buckets, +Inf equals the count; the 504 took over a second.
        buckets = sorted((float("inf") if dict(k[1])["le"] == "+Inf" else float(dict(k[1])["le"]),
                          v) for k, v in got.items()
                         if k[0] == "moat_request_duration_seconds_bucket")
        self.assertEqual(len(buckets), 12)
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], 13)
        self.assertLessEqual(dict(buckets)[0.5], 12)
        self.assertGreaterEqual(got[("moat_request_duration_seconds_sum", frozenset([pool]))],
                                1.0)
        received = got[("moat_client_received_bytes_total", frozenset())]
        sent = got[("moat_client_sent_bytes_total", frozenset())]
        self.assertGreater(received, 13 * 40)  # at least the requests' plaintext
        self.assertGreater(sent, received)     # certificates and responses
        info = [k for k in got if k[0] == "moat_build_info"]
        self.assertEqual(len(info), 1)
        self.assertIn("version", dict(info[0][1]))
        self.assertLess(abs(got[("moat_start_time_seconds", frozenset())] - time.time()), 600)

        # Hostile input on the admin port: each gets an answer or a close, never a crash.
        self.assertEqual(admin_get(admin, "/metrics", "POST")[0], 405)
        self.assertEqual(admin_get(admin, "/metrics", "DELETE")[0], 405)
        self.assertEqual(admin_get(admin, "/nope")[0], 404)
        self.assertEqual(admin_get(admin, "/healthz?x=1")[0], 200)
        head = admin_request(admin, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertTrue(head.endswith(b"\r\n\r\n"), "HEAD answered with a body")
        for junk in (b"\x00\xff" * 200, b"GET /metrics HTTP/1.1\r\n\r\n",
                     b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 100 + b"\r\n",
                     b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"J" * 20000, b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nab"):
            try:
                answer = admin_request(admin, junk)
            except ConnectionResetError:
                continue  # moat closed with our unread bytes pending: a fine answer to junk
            self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100])
        many = [socket.create_connection(("127.0.0.1", admin), timeout=IO_TIMEOUT)
                for _ in range(40)]
        many[0].sendall(b"GET /metr")  # half a request, then silence
        for s in many:
            s.close()
        self.assertEqual(admin_get(admin, "/healthz"), (200, b"ok\n"))
        self.assertEqual(c13.get("/")[0], 200)  # and moat still proxies

        # Every backend gone: requests fail until each worker has marked it down, then
        # /readyz says 503 and why.
        backend.stop()
        dead = 0
        for _ in range(60):
            self.assertEqual(c13.get("/")[0], 502)
            dead += 1
            status, body = admin_get(admin, "/readyz")
            if status == 503:
                break
        self.assertEqual(status, 503, body)
        self.assertIn(b"no usable backend", body)
        self.assertEqual(admin_get(admin, "/healthz")[0], 200)
        want = {
            ("moat_requests_total", frozenset([pool, ("code", "2xx")])): 8,
            ("moat_requests_total", frozenset([pool, ("code", "5xx")])): 2 + dead,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "connect_failed")])): dead,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "bad_gateway")])): 1 + dead,
            ("moat_backend_up", frozenset([pool, *be(backend.addr)])): 0,
        }
        got, wrong = self.wait_metrics(admin, want)
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")
        self.stop_clean(m)

    def test_retry_to_the_other_backend_and_backend_up(self):
        live = self.backend(handler=NoKeepAlive)
        dead_addr = "127.0.0.1:%d" % free_port()
        m, admin = self.start("--backend", dead_addr, "--backend", live.addr, "--workers", "1")
        client = Client(m.port)
        self.assertEqual(client.get("/")[0], 200)  # round-robin starts at the dead one
        pool = ("pool", "default")
        got, wrong = self.wait_metrics(admin, {
            ("moat_requests_total", frozenset([pool, ("code", "2xx")])): 1,
            ("moat_upstream_errors_total", frozenset([pool, ("kind", "connect_failed")])): 1,
            ("moat_upstream_retries_total", frozenset([pool, ("reason", "connect")])): 1,
            ("moat_backend_up", frozenset([pool, *be(dead_addr)])): 0,
            ("moat_backend_up", frozenset([pool, *be(live.addr)])): 1,
        })
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")
        status, body = admin_get(admin, "/readyz")
        self.assertEqual(status, 200, body)  # one usable backend is enough
        self.stop_clean(m)

    def test_pools_are_labelled_and_counters_survive_a_reload(self):
        web, api = self.backend(), self.backend()
        pools = """admin:
  listen: 127.0.0.1:0
workers: 1
pools:
  web:
    backends: [%s]
  %s:
    backends: [%s]
routes:
  - path: /api/
    pool: %s
default_pool: web
"""
        path, m = self.moat_config(pools % (web.addr, "api", api.addr, "api"))
        admin = int(ADMIN.search(m.stderr()).group(1))
        client = Client(m.port)
        for target in ("/a", "/b", "/c", "/api/1", "/api/2"):
            self.assertEqual(client.get(target)[0], 200)
        with tls_connect(m.port) as s:  # refused before it could be routed: the default pool
            s.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            self.assertIn(b" 400 ", recv_all(s))
        web_l, api_l = ("pool", "web"), ("pool", "api")
        got, wrong = self.wait_metrics(admin, {
            ("moat_requests_total", frozenset([web_l, ("code", "2xx")])): 3,
            ("moat_requests_total", frozenset([web_l, ("code", "4xx")])): 1,
            ("moat_requests_total", frozenset([api_l, ("code", "2xx")])): 2,
            ("moat_backend_up", frozenset([web_l, *be(web.addr)])): 1,
            ("moat_backend_up", frozenset([api_l, *be(api.addr)])): 1,
        })
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")

        # The api pool is renamed v2: web's counters go on, v2 starts at 0, api is gone.
        write_config(path, pools % (web.addr, "v2", api.addr, "v2"))
        m.reload("configuration 2 loaded")
        self.assertIn("configuration 2 loaded", m.stderr())
        client = Client(m.port)  # a new connection takes the new configuration
        for target in ("/d", "/api/3"):
            self.assertEqual(client.get(target)[0], 200)
        v2_l = ("pool", "v2")
        got, wrong = self.wait_metrics(admin, {
            ("moat_requests_total", frozenset([web_l, ("code", "2xx")])): 4,
            ("moat_requests_total", frozenset([v2_l, ("code", "2xx")])): 1,
            ("moat_backend_up", frozenset([v2_l, *be(api.addr)])): 1,
        })
        self.assertEqual(wrong, {}, "metrics that differ (got, want)")
        self.assertFalse([k for k in got if api_l in k[1]], "the removed pool is still shown")
        status, body = admin_get(admin, "/readyz")
        self.assertEqual(status, 200, body)
        self.stop_clean(m)

    def test_taken_admin_port_is_a_startup_error(self):
        backend = self.backend()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            m = Moat("--backend", backend.addr, "--admin", "127.0.0.1:%d" % port, wait=False)
            self.addCleanup(m.cleanup)
            rc = m.proc.wait(timeout=IO_TIMEOUT * 2)
        self.assertEqual(rc, 1, m.stderr())
        self.assertIn("--admin 127.0.0.1:%d" % port, m.stderr())
        self.assertNotIn(" started ", m.stderr())
        m.check_clean(self)

    def test_no_admin_by_default(self):
        backend = self.backend()
        m = self.moat("--backend", backend.addr)
        self.assertNotIn("admin listening", m.stderr())
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
