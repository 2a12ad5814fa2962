"""DNS discovery as users meet it: backends behind a name whose records change while moat runs,
served by a real DNS server on loopback (dnsd.py) that moat is pointed at with --resolver or
resolver.servers. Backends listen on 127.0.0.2, 127.0.0.3, ... (loopback, no root needed)."""
import http.client
import http.server
import re
import socket
import threading
import time
import unittest

from dnsd import DNSServer
from harness import Certs, EchoHandler, MoatTestCase
from test_admin import parse_metrics

NAME = "app.test"


class AddrBackend:
    """An echo backend on host:port; seen lists the requests it got."""

    def __init__(self, host, port):
        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
        self.host = host
        self.server = Server((host, port), EchoHandler)
        self.server.seen = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.is_up = True

    @property
    def paths(self):
        return [r["path"] for r in self.server.seen]

    def stop(self):
        if self.is_up:
            self.is_up = False
            self.server.shutdown()
            self.server.server_close()


def until(what, timeout, step=0.05):
    """Polls what() until it is true; its last value (false on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)  # polling a state another process changes


def https(port):
    return http.client.HTTPSConnection("localhost", port, context=Certs.client_context(),
                                       timeout=10)


def get(conn, path):
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("Retry-After")


def get_new(port, path):
    conn = https(port)
    try:
        return get(conn, path)
    finally:
        conn.close()


class DNSTestCase(MoatTestCase):
    def setUp(self):
        self.dns = DNSServer(ttl=1)
        self.addCleanup(self.dns.stop)
        self.n = 0

    def backends(self, *hosts):
        """Echo backends on each of hosts, all on one port; (port, [backends])."""
        for _ in range(20):
            with socket.socket() as s:
                s.bind((hosts[0], 0))
                port = s.getsockname()[1]
            try:
                made = []
                for h in hosts:
                    made.append(AddrBackend(h, port))
                    self.addCleanup(made[-1].stop)
                return port, made
            except OSError:
                for b in made:
                    b.stop()
        raise AssertionError("no port free on every one of %s" % (hosts,))

    def path(self):
        self.n += 1
        return "/dns/%d" % self.n

    def served_by(self, backends, path):
        for i, b in enumerate(backends):
            if path in b.paths:
                return i
        return None

    def admin_port(self, m):
        return int(re.search(r"admin listening on http://127\.0\.0\.1:(\d+)",
                             m.stderr()).group(1))

    def metrics_differ(self, m, want):
        """The samples of want /metrics does not show with their value: {key: (got, want)}."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port(m), timeout=10)
        try:
            conn.request("GET", "/metrics")
            got = parse_metrics(conn.getresponse().read().decode())
        finally:
            conn.close()
        return {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}

    def readyz(self, m):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port(m), timeout=10)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


class TestFollow(DNSTestCase):
    def test_a_record_that_moves_is_followed_also_by_an_open_connection(self):
        port, (old, new) = self.backends("127.0.0.2", "127.0.0.3")
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:%d" % (NAME, port), "--resolver", self.dns.addr,
                      "--workers", "2")
        kept = https(m.port)  # a client connection opened before the change, kept alive
        self.addCleanup(kept.close)
        p = self.path()
        self.assertEqual(get(kept, p)[0], 200)
        self.assertIn(p, old.paths)

        self.dns.set(NAME, "127.0.0.3")
        moved = time.monotonic()

        def on_new_address():
            p1, p2 = self.path(), self.path()
            s1, s2 = get(kept, p1)[0], get_new(m.port, p2)[0]
            self.assertEqual((s1, s2), (200, 200))
            return p1 in new.paths and p2 in new.paths
        self.assertTrue(until(on_new_address, self.dns.ttl + 2), m.stderr()[-2000:])
        self.assertLessEqual(time.monotonic() - moved, self.dns.ttl + 2)
        self.assertIn("main dns %s: 127.0.0.3 (was: 127.0.0.2)" % NAME, m.stderr())
        m.wait_log("DNS view 1, in use by every worker")

        old.stop()  # the replaced backend goes away: nobody notices
        for _ in range(10):
            p1, p2 = self.path(), self.path()
            self.assertEqual(get(kept, p1)[0], 200)
            self.assertEqual(get_new(m.port, p2)[0], 200)
            self.assertIn(p1, new.paths)
            self.assertIn(p2, new.paths)
        self.stop_clean(m)

    def test_scaling_from_one_record_to_three_spreads_the_requests(self):
        port, bs = self.backends("127.0.0.2", "127.0.0.3", "127.0.0.4")
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:%d" % (NAME, port), "--resolver", self.dns.addr,
                      "--workers", "2", "--admin", "127.0.0.1:0")
        self.assertEqual(get_new(m.port, self.path())[0], 200)
        self.dns.set(NAME, "127.0.0.4", "127.0.0.2", "127.0.0.3")  # in any order
        m.wait_log("DNS view 1, in use by every worker", timeout=self.dns.ttl + 3)
        self.assertIn("main dns %s: 127.0.0.2, 127.0.0.3, 127.0.0.4 (was: 127.0.0.2)" % NAME,
                      m.stderr())
        before = [len(b.paths) for b in bs]
        for _ in range(30):
            self.assertEqual(get_new(m.port, self.path())[0], 200)
        got = [len(b.paths) - n for b, n in zip(bs, before)]
        self.assertEqual(sum(got), 30)
        for n in got:  # round robin per worker: about 10 each
            self.assertGreaterEqual(n, 5, got)
        # Each address has its own series, labelled with the name it came from.
        name = ("backend", "%s:%d" % (NAME, port))
        want = {("moat_backend_responses_total",
                 frozenset([("pool", "default"), name, ("address", "%s:%d" % (b.host, port)),
                            ("code", "2xx")])): len(b.paths) for b in bs}
        want[("moat_dns_addresses", frozenset([("name", NAME)]))] = 3
        self.assertEqual(until(lambda: self.metrics_differ(m, want) == {}, 5), True,
                         self.metrics_differ(m, want))
        self.stop_clean(m)


    def test_a_new_address_ramps_up_under_slow_start(self):
        port, (old, new) = self.backends("127.0.0.2", "127.0.0.3")
        self.dns.set(NAME, "127.0.0.2")
        path, m = self.moat_config("""resolver: {servers: ["%s"]}
workers: 1
pools:
  app:
    backends: ["%s:%d"]
    slow_start: 60s
""" % (self.dns.addr, NAME, port))
        self.dns.set(NAME, "127.0.0.2", "127.0.0.3")
        m.wait_log("DNS view 1, in use by every worker", timeout=self.dns.ttl + 3)
        for _ in range(44):
            self.assertEqual(get_new(m.port, self.path())[0], 200)
        # A tenth of its share at first: about 4 of 44 (an equal share would be 22).
        self.assertGreaterEqual(len(new.paths), 1)
        self.assertLessEqual(len(new.paths), 8)
        self.stop_clean(m)


class TestUnresolved(DNSTestCase):
    def test_a_name_unknown_at_start_is_served_once_it_exists(self):
        port, (b,) = self.backends("127.0.0.2")
        m = self.moat("--backend", "%s:%d" % (NAME, port), "--resolver", self.dns.addr,
                      "--dns-refresh", "1s", "--admin", "127.0.0.1:0", "--workers", "1")
        self.assertIn("main backend %s:%d (pool default) does not resolve: no such name" %
                      (NAME, port), m.stderr())
        self.assertEqual(get_new(m.port, self.path()), (503, "1"))
        status, body = self.readyz(m)
        self.assertEqual(status, 503, body)

        self.dns.set(NAME, "127.0.0.2")
        m.wait_log("DNS view 1, in use by every worker", timeout=4)
        p = self.path()
        self.assertEqual(get_new(m.port, p)[0], 200)
        self.assertIn(p, b.paths)
        self.assertEqual(self.readyz(m)[0], 200)
        self.stop_clean(m)


class TestFailures(DNSTestCase):
    def test_a_failing_dns_server_changes_nothing(self):
        port, (b,) = self.backends("127.0.0.2")
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:%d" % (NAME, port), "--resolver", self.dns.addr,
                      "--workers", "1")
        for mode, log in (("servfail", "Server failed"), ("drop", "Timeout")):
            self.dns.fail(NAME, mode)
            asked = self.dns.count(NAME)
            self.assertTrue(until(lambda: self.dns.count(NAME) >= asked + 2, 8))
            self.assertEqual(get_new(m.port, self.path())[0], 200)
            self.dns.set(NAME, "127.0.0.2")
            m.wait_log("main dns %s: answering again" % NAME,
                       count=1 if mode == "servfail" else 2, timeout=8)
        self.assertIn("keeping its 1 address(es)", m.stderr())
        self.assertNotIn("DNS view", m.stderr())  # nothing was rebuilt
        self.stop_clean(m)

    def test_a_name_that_stops_existing_is_held_then_emptied(self):
        port, (b,) = self.backends("127.0.0.2")
        self.dns.set(NAME, "127.0.0.2")
        path, m = self.moat_config("""resolver:
  servers: ["%s"]
  refresh: 1s
  hold: 2s
pools:
  app: {backends: ["%s:%d"]}
""" % (self.dns.addr, NAME, port))
        self.assertEqual(get_new(m.port, self.path())[0], 200)
        self.dns.fail(NAME, "nxdomain")
        m.wait_log("main dns %s: no such name; its 1 address(es) stay for 2000 ms" % NAME,
                   timeout=4)
        gone = time.monotonic()
        self.assertEqual(get_new(m.port, self.path())[0], 200)  # held
        m.wait_log("main dns %s: no address (was: 127.0.0.2)" % NAME, timeout=6)
        self.assertGreaterEqual(time.monotonic() - gone, 1.0)
        m.wait_log("DNS view 1, in use by every worker")
        self.assertEqual(get_new(m.port, self.path()), (503, "1"))
        self.stop_clean(m)


class TestRefresh(DNSTestCase):
    def asked_in(self, m, seconds):
        start = self.dns.count(NAME)
        t0 = time.monotonic()
        until(lambda: False, seconds, step=0.1)  # counting queries over a fixed window
        return self.dns.count(NAME) - start, time.monotonic() - t0

    def test_a_short_ttl_is_followed_but_never_under_a_second(self):
        self.dns.ttl = 0  # as some container DNS servers answer
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:8080" % NAME, "--resolver", self.dns.addr,
                      "--dns-refresh", "60s", "--workers", "1")
        n, elapsed = self.asked_in(m, 3.5)
        self.assertGreaterEqual(n, 2)              # the TTL, not the 60 s refresh
        self.assertLessEqual(n, elapsed / 1.0 + 1)  # the 1 s floor
        self.stop_clean(m)

    def test_refresh_caps_a_long_ttl(self):
        self.dns.ttl = 600  # Docker's embedded DNS answers with this
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:8080" % NAME, "--resolver", self.dns.addr,
                      "--dns-refresh", "1s", "--workers", "1")
        n, elapsed = self.asked_in(m, 3.5)
        self.assertGreaterEqual(n, 2)
        self.assertLessEqual(n, elapsed / 1.0 + 1)
        self.stop_clean(m)

    def test_refresh_0_resolves_once(self):
        self.dns.set(NAME, "127.0.0.2")
        m = self.moat("--backend", "%s:8080" % NAME, "--resolver", self.dns.addr,
                      "--dns-refresh", "0", "--workers", "1")
        asked = self.dns.count(NAME)
        self.assertEqual(asked, 1)
        n, _ = self.asked_in(m, 2.5)
        self.assertEqual(n, 0)
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
