"""Load balancing: weights (smooth weighted round robin), weight 0, a pool with nothing to try,
the algorithms (random, least_request, hash) and sticky sessions."""
import http.client
import socket
import socketserver
import struct
import threading
import time
import unittest

from dnsd import DNSServer
from harness import Certs, EchoHandler, MoatTestCase, curl, free_port, write_config


class SlowHandler(EchoHandler):
    """Every request takes 0.2 s: a backend that is busy."""

    def handle_any(self):
        time.sleep(0.2)
        super().handle_any()

    do_GET = do_POST = handle_any


def request(port, path, headers=None):
    """One GET on a new connection: (status, headers as a dict of lists, body)."""
    conn = http.client.HTTPSConnection("localhost", port, context=Certs.client_context(),
                                       timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        fields = {}
        for k, v in resp.getheaders():
            fields.setdefault(k.lower(), []).append(v)
        return resp.status, fields, body
    finally:
        conn.close()


def served_by(backends, path):
    """Which of backends saw path (its index), or None."""
    for i, b in enumerate(backends):
        if any(r["path"] == path for r in b.seen):
            return i
    return None


def get_many(port, n, conns):
    """n GETs spread over `conns` kept-alive client connections, one thread each; returns the
    statuses seen (a failure raises in the caller)."""
    statuses, errors = [], []
    lock = threading.Lock()

    def run(count):
        conn = http.client.HTTPSConnection("localhost", port, context=Certs.client_context(),
                                           timeout=10)
        try:
            for i in range(count):
                conn.request("GET", "/w%d" % i)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
        except Exception as e:  # reported by the caller
            with lock:
                errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise AssertionError("requests failed: %s" % errors[:5])
    return statuses


class TestWeights(MoatTestCase):
    def test_weighted_split_within_5_percent_and_weight_0_gets_nothing(self):
        a, b, c = self.backend(), self.backend(), self.backend()
        path, m = self.moat_config("""workers: 2
pools:
  app:
    backends:
      - {address: %s, weight: 3}
      - %s
      - {address: %s, weight: 0}
logging: {access_log: false}
""" % (a.addr, b.addr, c.addr))
        statuses = get_many(m.port, 4000, 8)
        self.assertEqual(statuses, [200] * 4000)
        # Smooth weighted round robin is exact per worker (a a b a ...): the split is 3:1 to
        # within a request per worker and connection start, far inside 5 % (200 of 4000).
        self.assertLessEqual(abs(len(a.seen) - 3000), 200, (len(a.seen), len(b.seen)))
        self.assertLessEqual(abs(len(b.seen) - 1000), 200, (len(a.seen), len(b.seen)))
        self.assertEqual(len(a.seen) + len(b.seen), 4000)
        self.assertEqual(c.seen, [], "a backend of weight 0 got new requests")
        self.stop_clean(m)

    def test_weights_interleave_per_worker(self):
        """With one worker the order itself is nginx's: a a b a, repeated."""
        a, b = self.backend(), self.backend()
        m = self.moat("--backend", a.addr + ",weight=3", "--backend", b.addr, "--workers", "1")
        order = []
        for i in range(8):
            rc, out, err = curl(m.url("/o%d" % i))
            self.assertEqual(rc, 0, err)
            order.append("a" if any(r["path"] == "/o%d" % i for r in a.seen) else "b")
        self.assertEqual("".join(order), "aabaaaba")
        self.stop_clean(m)

    def test_every_weight_0_answers_503_with_retry_after(self):
        a = self.backend()
        m = self.moat("--backend", a.addr + ",weight=0")
        rc, out, err = curl("-i", m.url("/none"))
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, rb"^HTTP/1.1 503 ")
        self.assertIn(b"Retry-After: 1", out)
        self.assertEqual(a.seen, [])
        self.stop_clean(m)


class TestAlgorithms(MoatTestCase):
    def test_random_follows_weights(self):
        a, b = self.backend(), self.backend()
        m = self.moat("--backend", a.addr + ",weight=3", "--backend", b.addr,
                      "--balance", "random", "--workers", "2")
        self.assertEqual(get_many(m.port, 1200, 4), [200] * 1200)
        # 900 expected on a; a binomial's 5 sigma is 75.
        self.assertLessEqual(abs(len(a.seen) - 900), 75, (len(a.seen), len(b.seen)))
        self.stop_clean(m)

    def test_least_request_sends_less_to_a_busy_backend(self):
        slow, fast = self.backend(handler=SlowHandler), self.backend()
        m = self.moat("--backend", slow.addr, "--backend", fast.addr,
                      "--balance", "least_request", "--workers", "1")
        # Round robin would give the slow backend half of them; fewer in flight wins here.
        self.assertEqual(get_many(m.port, 160, 8), [200] * 160)
        self.assertLess(len(slow.seen), 160 // 4, (len(slow.seen), len(fast.seen)))
        self.stop_clean(m)

    def test_hash_on_a_header_keeps_each_key_on_one_backend(self):
        backends = [self.backend(), self.backend(), self.backend()]
        args = []
        for b in backends:
            args += ["--backend", b.addr]
        m = self.moat(*args, "--balance", "hash", "--hash-key", "header:X-User",
                      "--workers", "2")
        homes = {}
        for user in range(30):
            for n in range(4):  # new connections: both workers see each key
                path = "/u%d/%d" % (user, n)
                status, _, _ = request(m.port, path, {"X-User": "user-%d" % user})
                self.assertEqual(status, 200)
                homes.setdefault(user, set()).add(served_by(backends, path))
        self.assertTrue(all(len(h) == 1 for h in homes.values()), homes)
        used = {next(iter(h)) for h in homes.values()}
        self.assertEqual(len(used), 3, "30 keys all on fewer than 3 backends: %s" % homes)
        self.stop_clean(m)


class FailingHandler(EchoHandler):
    """Answers every request with 500: a bad deploy."""

    def handle_any(self):
        self.server.seen.append({"path": self.path})
        self.reply(500, b"broken\n")

    do_GET = do_POST = handle_any


class PausingHandler(EchoHandler):
    """Answers every request with 503 and Retry-After: 30: a backend asking for a pause."""

    def handle_any(self):
        self.server.seen.append({"path": self.path})
        self.reply(503, b"later\n", [("Retry-After", "30")])

    do_GET = do_POST = handle_any


class CloseWithoutAnswer(socketserver.BaseRequestHandler):
    """Reads a request head and closes the connection without a byte of response."""

    def handle(self):
        f = self.request.makefile("rb")
        while f.readline() not in (b"\r\n", b""):
            pass


class ResetAfterAWhile(socketserver.BaseRequestHandler):
    """Reads a request head, holds it for server.hold seconds (so that many are in flight at
    once), then resets the connection (RST, no byte of response); counts connections."""

    def handle(self):
        with self.server.lock:
            self.server.connections += 1
        f = self.request.makefile("rb")
        while f.readline() not in (b"\r\n", b""):
            pass
        time.sleep(self.server.hold)  # the backend "works" on it
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class TestPassiveHealth(MoatTestCase):
    def test_a_backend_answering_500_is_ejected_after_5(self):
        good, bad = self.backend(), self.backend(handler=FailingHandler)
        m = self.moat("--backend", good.addr, "--backend", bad.addr, "--workers", "2")
        statuses = [request(m.port, "/p%d" % i)[0] for i in range(60)]
        # Five failures in a row eject it for every worker; the 500s it sent before reach
        # their clients unchanged (moat does not turn them into other errors).
        self.assertEqual(statuses.count(500), 5, statuses)
        self.assertEqual(statuses.count(200), 55)
        self.assertEqual(len(bad.seen), 5)
        self.assertEqual(m.stderr().count("ejected for 10000 ms after 5 failures"), 1,
                         m.stderr())
        self.stop_clean(m)

    def test_the_last_usable_backend_is_never_ejected(self):
        bad = self.backend(handler=FailingHandler)
        m = self.moat("--backend", bad.addr)
        statuses = [request(m.port, "/l%d" % i)[0] for i in range(12)]
        self.assertEqual(statuses, [500] * 12)
        self.assertEqual(len(bad.seen), 12)
        self.assertNotIn("ejected", m.stderr())
        self.stop_clean(m)

    def test_at_most_half_a_pool_is_ejected(self):
        bad1, bad2 = self.backend(handler=FailingHandler), self.backend(handler=FailingHandler)
        m = self.moat("--backend", bad1.addr, "--backend", bad2.addr, "--workers", "1")
        statuses = [request(m.port, "/h%d" % i)[0] for i in range(30)]
        self.assertEqual(statuses, [500] * 30)  # every answer is the backends' own 500
        self.assertEqual(m.stderr().count("ejected"), 1, m.stderr())
        self.stop_clean(m)

    def test_503_with_retry_after_pauses_the_backend(self):
        good, busy = self.backend(), self.backend(handler=PausingHandler)
        m = self.moat("--backend", busy.addr, "--backend", good.addr, "--workers", "1")
        # A POST is not replayed: the backend's 503 and its Retry-After reach the client.
        conn = http.client.HTTPSConnection("localhost", m.port, context=Certs.client_context(),
                                           timeout=10)
        conn.request("POST", "/first", body=b"x")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.getheader("Retry-After"), "30")
        for i in range(10):
            self.assertEqual(request(m.port, "/after%d" % i)[0], 200)
        self.assertEqual(len(busy.seen), 1)  # paused: nothing new for 30 s
        self.assertIn("paused for 30000 ms (503, Retry-After)", m.stderr())
        self.stop_clean(m)


class TestRetries(MoatTestCase):
    def test_a_503_to_a_get_is_retried_on_another_backend(self):
        good, busy = self.backend(), self.backend(handler=PausingHandler)
        m = self.moat("--backend", busy.addr, "--backend", good.addr, "--workers", "1")
        status, fields, body = request(m.port, "/get")
        self.assertEqual(status, 200)  # the client never sees the 503
        self.assertNotIn("retry-after", fields)
        self.assertEqual([r["path"] for r in busy.seen], ["/get"])
        self.assertEqual([r["path"] for r in good.seen], ["/get"])
        self.assertIn("503; trying another", m.stderr())
        self.stop_clean(m)

    def test_a_backend_closing_without_answer_is_retried_for_gets_only(self):
        good = self.backend()
        closer = self.raw_backend(CloseWithoutAnswer)
        m = self.moat("--backend", closer.addr, "--backend", good.addr, "--workers", "1",
                      "--log-level", "debug")
        self.assertEqual(request(m.port, "/g")[0], 200)
        self.assertEqual([r["path"] for r in good.seen], ["/g"])
        self.assertIn("closed without answering; trying another", m.stderr())
        # A POST is never sent twice: the closer has it, the client gets 502.
        conn = http.client.HTTPSConnection("localhost", m.port, context=Certs.client_context(),
                                           timeout=10)
        for i in range(2):  # round robin: one of the two goes to the closer
            conn.request("POST", "/p%d" % i, body=b"x")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 502:
                break
            conn.close()
            conn = http.client.HTTPSConnection("localhost", m.port,
                                               context=Certs.client_context(), timeout=10)
        conn.close()
        self.assertEqual(resp.status, 502)
        self.assertNotIn("/p%d" % i, [r["path"] for r in good.seen])
        self.stop_clean(m)


    def test_the_retry_budget_holds_when_every_backend_resets(self):
        """30 GETs at once to a fleet that resets every connection: one attempt each, and
        retries only within the budget (20 % of the requests in flight, never under 3), not 30
        more; every client gets its 502 promptly."""
        import re
        fleet = [self.raw_backend(ResetAfterAWhile, hold=0.4, connections=0,
                                  lock=threading.Lock()) for _ in range(3)]
        args = []
        for b in fleet:
            args += ["--backend", b.addr]
        m = self.moat(*args, "--workers", "1", "--admin", "127.0.0.1:0")
        admin = int(re.search(r"admin listening on http://127\.0\.0\.1:(\d+)",
                              m.stderr()).group(1))
        n = 30
        start = threading.Barrier(n)
        statuses = []

        def one(i):
            start.wait(timeout=20)
            statuses.append(request(m.port, "/r%d" % i)[0])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(statuses, [502] * n)
        self.assertLess(time.monotonic() - t0, 20)  # nothing hung
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()

        def retries(reason):
            found = re.search(r'moat_upstream_retries_total\{pool="default",reason="%s"\} (\d+)'
                              % reason, text)
            return int(found.group(1))
        retried, refused = retries("empty"), retries("refused_by_budget")
        connections = sum(b.connections for b in fleet)
        self.assertEqual(connections, n + retried)  # one try each, plus the retries
        self.assertGreaterEqual(retried, 3)          # the budget's floor was used
        self.assertLessEqual(retried, n // 2)        # but nowhere near one retry per request
        self.assertEqual(retried + refused, n)       # every other one was refused, and counted
        self.stop_clean(m)


class HealthHandler(EchoHandler):
    """/healthz answers the server's health_status (the test changes it); the rest echoes."""

    def handle_any(self):
        if self.path == "/healthz":
            self.server.probes += 1
            self.reply(self.server.health_status, b"health\n")
            return
        super().handle_any()

    do_GET = do_POST = handle_any


class TestActiveHealth(MoatTestCase):
    def test_checks_take_a_backend_out_and_bring_it_back(self):
        a, b = self.backend(handler=HealthHandler), self.backend(handler=HealthHandler)
        for x in (a, b):
            x.server.health_status, x.server.probes = 200, 0
        started = time.monotonic()
        path, m = self.moat_config("""workers: 2
pools:
  app:
    backends: [%s, %s]
    health_check: {path: /healthz, interval: 200ms, timeout: 1s, rise: 2, fall: 2}
logging: {access_log: false}
""" % (a.addr, b.addr))
        a.server.health_status = 503  # the signal a backend gives before it stops: out at once
        m.wait_log("main backend %s fails its health check (status 503)" % a.addr)
        before = [r["path"] for r in a.seen]
        for i in range(10):
            self.assertEqual(request(m.port, "/out%d" % i)[0], 200)
        self.assertEqual([r["path"] for r in a.seen], before, "a failing backend got requests")
        a.server.health_status = 200
        m.wait_log("main backend %s passes its health check again (2 in a row)" % a.addr)
        for i in range(10):
            self.assertEqual(request(m.port, "/in%d" % i)[0], 200)
        self.assertTrue(any(r["path"].startswith("/in") for r in a.seen))
        # Once per process, not once per worker: at most one probe of b per interval (180 ms
        # with the jitter), where two workers would each send their own.
        elapsed = time.monotonic() - started
        self.assertGreater(b.server.probes, 0)
        self.assertLessEqual(b.server.probes, elapsed / 0.18 + 2, (b.server.probes, elapsed))
        self.stop_clean(m)


class TestNames(MoatTestCase):
    def test_a_name_that_does_not_resolve_is_a_warning(self):
        a = self.backend()
        dns = DNSServer()  # knows no name: NXDOMAIN
        self.addCleanup(dns.stop)
        path, m = self.moat_config("""pools:
  app: {backends: ["nowhere.test:8080"]}
  web: {backends: [%s]}
routes:
  - {path: /web/, pool: web}
default_pool: app
admin: {listen: "127.0.0.1:0"}
resolver: {servers: ["%s"]}
""" % (a.addr, dns.addr))
        self.assertIn("main backend nowhere.test:8080 (pool app) does not resolve: no such "
                      "name; it gets no requests until it does", m.stderr())
        status, fields, _ = request(m.port, "/app")
        self.assertEqual(status, 503)
        self.assertEqual(fields["retry-after"], ["1"])
        self.assertEqual(request(m.port, "/web/x")[0], 200)  # the other pool is served
        import re
        admin = int(re.search(r"admin listening on http://127\.0\.0\.1:(\d+)",
                              m.stderr()).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.assertEqual(resp.status, 503, body)
        self.assertIn(b"pool app", body)
        self.stop_clean(m)

    def test_every_address_of_a_name_is_a_backend(self):
        """localhost has 127.0.0.1 and ::1 here when IPv6 is on: both get requests."""
        import socket
        addrs = {ai[4][0] for ai in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
        if len(addrs) < 2:
            self.skipTest("localhost has one address here")
        import http.server
        port = free_port()
        servers = []
        for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            class Server(http.server.ThreadingHTTPServer):
                address_family = fam
            srv = Server((host, port), EchoHandler)
            srv.seen = []
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.addCleanup(srv.server_close)
            self.addCleanup(srv.shutdown)
            servers.append(srv)
        m = self.moat("--backend", "localhost:%d" % port, "--workers", "1")
        for i in range(6):
            self.assertEqual(request(m.port, "/n%d" % i)[0], 200)
        self.assertEqual([len(s.seen) for s in servers], [3, 3])
        self.stop_clean(m)


class SteadyClient(threading.Thread):
    """GETs at about 50 per second until stopped (bounded: 60 s, 3000 requests), on one kept-alive
    connection and, every fifth, on a new one; records every status that is not 2xx."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok, self.bad = port, threading.Event(), 0, []

    def run(self):
        conn = None
        deadline = time.monotonic() + 60
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline and n < 3000:
            n += 1
            if conn is None or n % 5 == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPSConnection("localhost", self.port,
                                                   context=Certs.client_context(), timeout=10)
            try:
                conn.request("GET", "/deploy/%d" % n)
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    self.ok += 1
                else:
                    self.bad.append(resp.status)
            except Exception as e:  # a failure of any kind counts
                self.bad.append("%s: %s" % (type(e).__name__, e))
                conn.close()
                conn = None
            time.sleep(0.02)  # the pace of the load, not a wait for a state
        if conn is not None:
            conn.close()


class TestRollingDeploy(MoatTestCase):
    def test_replacing_a_backend_at_50_requests_per_second_costs_no_error(self):
        old, new = self.backend(handler=HealthHandler), self.backend(handler=HealthHandler)
        for x in (old, new):
            x.server.health_status, x.server.probes = 200, 0
        conf = """workers: 2
pools:
  app:
    backends: [%s]
    health_check: {path: /healthz, interval: 200ms, timeout: 1s, rise: 1, fall: 2}
logging: {access_log: false}
"""
        path, m = self.moat_config(conf % old.addr)
        client = SteadyClient(m.port)
        client.start()
        # 1. The new instance comes up and joins the pool.
        write_config(path, conf % ("%s, %s" % (old.addr, new.addr)))
        m.reload("configuration 2 in use by every worker")
        # 2. The old one is told to stop: its check says 503, moat takes it out at once.
        old.server.health_status = 503
        m.wait_log("backend %s fails its health check" % old.addr)
        # 3. It goes, and leaves the configuration.
        old.stop()
        write_config(path, conf % new.addr)
        m.reload("configuration 3 in use by every worker")
        served_before = len(new.seen)
        deadline = time.monotonic() + 10
        while len(new.seen) < served_before + 50 and time.monotonic() < deadline:
            time.sleep(0.02)  # until 50 more requests (a second of load) are served
        client.stop.set()
        client.join(timeout=30)
        self.assertEqual(client.bad, [], "requests failed during the deploy")
        self.assertGreater(client.ok, 50)
        self.assertTrue(any(r["path"].startswith("/deploy/") for r in old.seen))
        self.assertGreaterEqual(len(new.seen), served_before + 50)
        self.stop_clean(m)


class TestEverythingDown(MoatTestCase):
    def test_every_backend_down_then_one_back(self):
        import http.server
        dead1, dead2 = free_port(), free_port()
        m = self.moat("--backend", "127.0.0.1:%d" % dead1, "--backend", "127.0.0.1:%d" % dead2,
                      "--workers", "1")
        self.assertEqual(request(m.port, "/d1")[0], 502)  # tried, refused: never a hang
        self.assertEqual(request(m.port, "/d2")[0], 502)
        self.assertEqual(m.stderr().count("no backend is usable"), 1, m.stderr())
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", dead1), EchoHandler)
        srv.seen = []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        # Both are still marked down, so moat tries them anyway and finds the one that is back.
        self.assertEqual(request(m.port, "/back1")[0], 200)
        self.assertEqual(request(m.port, "/back2")[0], 200)
        self.assertIn("a backend is usable again", m.wait_log("a backend is usable again"))
        self.assertEqual(m.stderr().count("no backend is usable"), 1)
        self.stop_clean(m)


class TestSticky(MoatTestCase):
    def test_cookie_pins_then_repins_when_the_backend_goes(self):
        a, b = self.backend(), self.backend()
        conf = """workers: 2
pools:
  app:
    backends: [%s]
    sticky: {cookie: app_pin, same_site: lax}
logging: {access_log: false}
"""
        path, m = self.moat_config(conf % ("%s, %s" % (a.addr, b.addr)))
        backends = [a, b]
        status, fields, _ = request(m.port, "/first")
        self.assertEqual(status, 200)
        cookie = fields["set-cookie"][0]
        self.assertRegex(cookie, r"^app_pin=[0-9a-f]{16}; Path=/; Secure; HttpOnly; "
                                 r"SameSite=Lax$")
        for addr in (a.addr, b.addr):
            self.assertNotIn(addr.split(":")[1], cookie)  # the value hides the address
        pin = cookie.split(";")[0]
        home = served_by(backends, "/first")
        for i in range(20):
            status, fields, _ = request(m.port, "/again%d" % i, {"Cookie": "x=1; " + pin})
            self.assertEqual(status, 200)
            self.assertEqual(served_by(backends, "/again%d" % i), home)
            self.assertNotIn("set-cookie", fields)  # already pinned: nothing to say
        # The pinned backend leaves the pool (a reload; a backend passed over after failures
        # is the unit test's case): the client is served by the other and pinned to it.
        write_config(path, conf % backends[1 - home].addr)
        m.reload("configuration 2 in use by every worker")
        status, fields, _ = request(m.port, "/moved", {"Cookie": pin})
        self.assertEqual(status, 200)
        self.assertEqual(served_by(backends, "/moved"), 1 - home)
        self.assertNotEqual(fields["set-cookie"][0].split(";")[0], pin)  # pinned anew
        self.stop_clean(m)


class TestAdminBackends(MoatTestCase):
    def start(self, *args):
        import re
        m = self.moat("--admin", "127.0.0.1:0", *args)
        found = re.search(r" main admin listening on http://127\.0\.0\.1:(\d+)", m.stderr())
        self.assertIsNotNone(found, m.stderr())
        return m, int(found.group(1))

    def admin(self, port, method, path):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def test_get_backends_and_drain_during_a_long_download(self):
        import json
        a, b = self.backend(), self.backend()
        m, admin = self.start("--backend", a.addr, "--backend", b.addr + ",weight=2",
                              "--workers", "2")
        status, body = self.admin(admin, "GET", "/backends")
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        pool = doc["pools"][0]
        self.assertEqual(pool["name"], "default")
        self.assertEqual(pool["balance"], "round_robin")
        self.assertEqual([x["address"] for x in pool["backends"]], [a.addr, b.addr])
        self.assertEqual([x["weight"] for x in pool["backends"]], [1, 2])
        self.assertEqual({x["state"] for x in pool["backends"]}, {"up"})
        # A slow download from a is under way when a is drained: it finishes; a gets nothing
        # new. (b at weight 0 first, so that the download goes to a.)
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/weight?to=0"
                                    % b.addr)[0], 200)
        result = {}

        def download():
            result["status"], _, result["body"] = request(m.port, "/slow/1.5")
        t = threading.Thread(target=download)
        t.start()
        deadline = time.monotonic() + 10
        while not any(r["path"] == "/slow/1.5" for r in a.seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/state?to=drain"
                                    % a.addr)[0], 200)
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/weight?to=-1"
                                    % b.addr)[0], 200)
        t.join(timeout=30)
        self.assertEqual(result.get("status"), 200)
        self.assertEqual(result.get("body"), b"slow done\n")
        before = len(a.seen)
        for i in range(10):
            self.assertEqual(request(m.port, "/d%d" % i)[0], 200)
        self.assertEqual(len(a.seen), before, "a drained backend got new requests")
        doc = json.loads(self.admin(admin, "GET", "/backends")[1])
        self.assertEqual(doc["pools"][0]["backends"][0]["state"], "draining")
        # Back to ready, and a weight from the admin: b gets everything at weight 0... for a.
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/state?to=ready"
                                    % a.addr)[0], 200)
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/weight?to=0"
                                    % b.addr)[0], 200)
        before_b = len(b.seen)
        for i in range(6):
            self.assertEqual(request(m.port, "/w%d" % i)[0], 200)
        self.assertEqual(len(b.seen), before_b)
        self.assertIn("main admin: backend %s of pool default: weight 0" % b.addr, m.stderr())
        # Mistakes get a clear status; POST is not a write method here.
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/%s/state?to=off"
                                    % a.addr)[0], 400)
        self.assertEqual(self.admin(admin, "PUT", "/backends/default/10.9.9.9:1/state?to=drain")
                         [0], 404)
        self.assertEqual(self.admin(admin, "POST", "/backends/default/%s/state?to=drain"
                                    % a.addr)[0], 405)
        self.stop_clean(m)

    def test_writes_off_loopback_only_when_the_file_says_so(self):
        """An admin listener on every address serves reads; PUT only with admin.writes: true
        (the test still connects through loopback)."""
        import re
        a = self.backend()
        for writes, want, warning in (("", 403, "(writes, PUT /backends/..., are refused)"),
                                      ("\n  writes: true", 200, "and can drain backends")):
            with self.subTest(writes=writes):
                path, m = self.moat_config("pools: {app: {backends: [%s]}}\nadmin:\n"
                                           "  listen: 0.0.0.0:0%s\n" % (a.addr, writes))
                self.assertIn(warning, m.stderr())
                admin = int(re.search(r" main admin listening on http://0\.0\.0\.0:(\d+)",
                                      m.stderr()).group(1))
                self.assertEqual(self.admin(admin, "GET", "/backends")[0], 200)
                status, body = self.admin(admin, "PUT", "/backends/app/%s/state?to=drain"
                                          % a.addr)
                self.assertEqual(status, want, body)
                self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
