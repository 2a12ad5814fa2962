"""Reloading moat's configuration with SIGHUP under load, certificate rotation, a broken reload,
and dropping privileges."""
import http.client
import os
import shutil
import signal
import ssl
import threading
import time
import unittest

from harness import Certs, MoatTestCase, curl, free_port, tls_connect, write_config

RELOAD_EVERY_S = 0.1
LOADED = "main configuration "  # the log line of each configuration moat takes
RELOAD_FOR_S = 3.0


def yaml_config(path, backend, pool_name):
    """A configuration with one pool holding one backend, on an ephemeral port."""
    write_config(path, """workers: 2
pools:
  %s:
    backends: [%s]
logging:
  access_log: false
""" % (pool_name, backend))


class Client(threading.Thread):
    """Sends GETs until stopped, on one kept-alive connection (long_lived) or on a new
    connection each time, and records every failure and which backend answered."""

    def __init__(self, port, long_lived):
        super().__init__(daemon=True)
        self.port = port
        self.long_lived = long_lived
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []

    def connect(self):
        ctx = Certs.client_context()
        return http.client.HTTPSConnection("localhost", self.port, context=ctx, timeout=10)

    def run(self):
        conn = self.connect()
        deadline = time.monotonic() + 60  # bounded even if nobody stops us
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline and n < 20000:
            n += 1
            try:
                conn.request("GET", "/r%d" % n)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    self.failures.append("status %d: %r" % (resp.status, body[:200]))
                else:
                    self.ok += 1
            except Exception as e:  # every failure counts, whatever its kind
                self.failures.append("%s: %s" % (type(e).__name__, e))
                conn.close()
                conn = self.connect()
                continue
            if not self.long_lived:
                conn.close()
                conn = self.connect()
        conn.close()


class TestReload(MoatTestCase):
    def start_yaml(self, backend, pool_name):
        path = os.path.join(self.tmp_dir(), "moat.yaml")
        yaml_config(path, backend, pool_name)
        return path, self.moat("-c", path, listen=(), certs=None, state_dir="")

    def test_reload_every_100ms_under_load_drops_nothing(self):
        a, b = self.backend(), self.backend()
        path, m = self.start_yaml(a.addr, "blue")
        clients = [Client(m.port, long_lived=True), Client(m.port, long_lived=True),
                   Client(m.port, long_lived=False)]
        for c in clients:
            c.start()
        loaded = m.stderr().count(LOADED)
        reloads = 0

        def reload_to(addr, name):
            # Signals that arrive before the first is handled merge into one (as for any
            # process), so each reload is waited for, as an operator would, before the next.
            nonlocal reloads
            yaml_config(path, addr, name)
            m.proc.send_signal(signal.SIGHUP)
            reloads += 1
            deadline = time.monotonic() + 10
            while m.stderr().count(LOADED) < loaded + reloads and time.monotonic() < deadline:
                time.sleep(0.005)

        start = time.monotonic()
        while time.monotonic() < start + RELOAD_FOR_S:
            time.sleep(max(0.0, start + (reloads + 1) * RELOAD_EVERY_S - time.monotonic()))
            # Alternate between the two pool definitions, ending on backend b.
            if reloads % 2 == 0:
                reload_to(b.addr, "green")
            else:
                reload_to(a.addr, "blue")
        if reloads % 2 == 0:
            reload_to(b.addr, "green")
        # The start's configuration is 1, each reload's the next number.
        in_use = "configuration %d in use by every worker" % (reloads + 1)
        self.assertIn(in_use, m.wait_log(in_use))
        # New connections now go to b only (the long-lived clients may still
        # be on a connection that began before the last reload: their
        # requests may go to a, so count only these).
        for i in range(6):
            rc, out, err = curl(m.url("/after"))
            self.assertEqual(rc, 0, err)
        after = lambda backend: [r for r in backend.seen if r["path"] == "/after"]
        self.assertEqual(after(a), [], "a request went to the old pool after reload")
        self.assertEqual(len(after(b)), 6)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(timeout=30)
        total = sum(c.ok for c in clients)
        failures = [f for c in clients for f in c.failures]
        self.assertEqual(failures, [], "requests failed during %d reloads" % reloads)
        self.assertGreater(total, 50, "too little traffic to mean anything")
        # Both pools served requests while reloads alternated.
        self.assertGreater(len(a.seen), 0)
        self.assertGreater(len(b.seen), 6)
        self.assertGreaterEqual(reloads, RELOAD_FOR_S / RELOAD_EVERY_S / 2)
        self.assertEqual(m.stderr().count(LOADED), loaded + reloads)
        self.assertNotIn("reload failed", m.stderr())
        self.stop_clean(m)

    def test_invalid_config_on_reload_keeps_the_running_one(self):
        a = self.backend()
        path, m = self.start_yaml(a.addr, "blue")
        with open(path, "w") as f:
            f.write("pools: [this is: not valid\n")
        m.reload("reload failed")
        self.assertIn("reload failed, the running configuration stays", m.stderr())
        self.assertRegex(m.stderr(), r"moat\.yaml:\d+:\d+: ")
        rc, out, err = curl(m.url("/still"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(a.seen), 1)
        self.stop_clean(m)

    def test_listener_change_is_refused(self):
        a = self.backend()
        path, m = self.start_yaml(a.addr, "blue")
        text = open(path).read().replace("127.0.0.1:0", "127.0.0.2:0")
        with open(path, "w") as f:
            f.write(text)
        m.reload("reload refused")
        self.assertIn("reload refused, the running configuration stays: listeners changed",
                      m.stderr())
        rc, out, err = curl(m.url("/still"))
        self.assertEqual(rc, 0, err)
        self.stop_clean(m)

    def test_certificate_rotation_with_flags(self):
        """Without --config, SIGHUP re-reads the same flags: rotated certificate files."""
        be = self.backend()
        d = self.tmp_dir()
        cert, key = os.path.join(d, "site.pem"), os.path.join(d, "site.key")
        shutil.copy(Certs.path("ec.pem"), cert)
        shutil.copy(Certs.path("ec.key"), key)
        m = self.moat("--backend", be.addr, "--cert", cert, "--key", key, certs=None)
        old = tls_connect(m.port)
        old_der = old.getpeercert(binary_form=True)
        shutil.copy(Certs.path("rsa.pem"), cert)
        shutil.copy(Certs.path("rsa.key"), key)
        self.assertIn("configuration 2 in use by every worker",
                      m.reload("configuration 2 in use by every worker"))
        new = tls_connect(m.port)
        self.assertNotEqual(new.getpeercert(binary_form=True), old_der)
        self.assertEqual(new.getpeercert(binary_form=True),
                         ssl.PEM_cert_to_DER_cert(open(Certs.path("rsa.pem")).read()))
        new.close()
        # The connection made before the reload still works, on its old configuration.
        old.sendall(b"GET /old HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertTrue(old.recv(100).startswith(b"HTTP/1.1 200"))
        old.close()
        # A broken key on the next reload leaves the RSA certificate in place.
        with open(key, "w") as f:
            f.write("not a key\n")
        m.reload("reload failed")
        self.assertRegex(m.stderr(), r"reload failed, the running configuration stays: .*site\.key")
        again = tls_connect(m.port)
        self.assertEqual(again.getpeercert(binary_form=True),
                         ssl.PEM_cert_to_DER_cert(open(Certs.path("rsa.pem")).read()))
        again.close()
        self.stop_clean(m)

    def test_in_flight_request_finishes_on_its_configuration_then_sigterm_drains(self):
        a, b = self.backend(), self.backend()
        path, m = self.start_yaml(a.addr, "blue")
        results = {}

        def slow(name, url):
            results[name] = curl(url)

        t1 = threading.Thread(target=slow, args=("old", m.url("/slow/1.5")))
        t1.start()
        deadline = time.monotonic() + 10
        while not a.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        yaml_config(path, b.addr, "green")
        self.assertIn("configuration 2 in use by every worker",
                      m.reload("configuration 2 in use by every worker"))
        t2 = threading.Thread(target=slow, args=("new", m.url("/slow/1.5")))
        t2.start()
        deadline = time.monotonic() + 10
        while not b.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(b.seen), 1, "the request after the reload went to the new pool")
        m.proc.send_signal(signal.SIGTERM)  # both requests are in flight, on two configurations
        t1.join(30)
        t2.join(30)
        for name in ("old", "new"):
            rc, out, err = results[name]
            self.assertEqual((rc, out), (0, b"slow done\n"), name + ": " + err)
        self.assertEqual(len(a.seen), 1)
        self.assertEqual(m.proc.wait(timeout=30), 0)
        m.stopped = True
        m.check_clean(self)

    def test_reload_keeps_backend_state_and_idle_connections(self):
        """What moat learnt about a backend survives SIGHUP: a backend that refused stays passed
        over (no new connect to it), and the idle pooled connection to an unchanged backend is
        used again (the backend sees no new connection)."""
        be = self.backend()
        dead = "127.0.0.1:%d" % free_port()
        body = "workers: 1\npools:\n  app:\n    backends: [%s, %s]\n" % (dead, be.addr)
        path, m = self.moat_config(body)
        for i in range(3):  # the first goes to the dead one, refused, then retried on be
            rc, out, err = curl(m.url("/before%d" % i))
            self.assertEqual(rc, 0, err)
        self.assertEqual(m.stderr().count("connect failed"), 1, m.stderr())
        self.assertIn("marked down", m.stderr())
        before_ports = {r["peer_port"] for r in be.seen}
        self.assertEqual(len(before_ports), 1, be.seen)  # one pooled connection served all
        write_config(path, body)
        m.reload("configuration 2 in use by every worker")
        for i in range(4):
            rc, out, err = curl(m.url("/after%d" % i))
            self.assertEqual(rc, 0, err)
        self.assertEqual(m.stderr().count("connect failed"), 1,
                         "the reload forgot that a backend refuses:\n" + m.stderr())
        after_ports = {r["peer_port"] for r in be.seen if r["path"].startswith("/after")}
        self.assertEqual(after_ports, before_ports, "the reload closed the idle connection")
        self.stop_clean(m)

    def test_a_refused_backend_is_passed_over_by_every_worker(self):
        """The first worker to see a refusal marks the backend for all: one failed connect, one
        log line, however many workers the requests reach."""
        be = self.backend()
        dead = "127.0.0.1:%d" % free_port()
        path, m = self.moat_config(
            "workers: 2\npools:\n  app:\n    backends: [%s, %s]\n" % (dead, be.addr))
        for i in range(12):  # new connections: the kernel spreads them over both workers
            rc, out, err = curl(m.url("/r%d" % i))
            self.assertEqual(rc, 0, err)
        self.assertEqual(m.stderr().count("connect failed"), 1, m.stderr())
        self.assertEqual(m.stderr().count("marked down"), 1, m.stderr())
        self.assertEqual(len(be.seen), 12)
        self.stop_clean(m)

    @unittest.skipUnless(os.geteuid() == 0, "dropping privileges needs root")
    def test_user_drop_after_ports_open(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--user", "nobody")
        with open("/proc/%d/status" % m.proc.pid) as f:
            status = f.read()
        uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0]
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        self.assertEqual(uid_line.split()[1:], [str(nobody)] * 4)
        self.assertIn("running as user nobody", m.stderr())
        rc, out, err = curl(m.url("/dropped"))
        self.assertEqual(rc, 0, err)
        self.stop_clean(m)

    def test_unknown_user_fails_before_ports_open(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--user", "no-such-user-moat", wait=False)
        rc = m.proc.wait(timeout=30)
        self.assertEqual(rc, 1)
        self.assertIn("user 'no-such-user-moat'", m.stderr())
        self.assertNotIn("started", m.stderr())


if __name__ == "__main__":
    unittest.main()
