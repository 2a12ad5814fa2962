"""A moat process's life: the development certificate, workers, logs, graceful stop."""
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
import unittest

from harness import Certs, MoatTestCase, curl, read_response, tls_connect


class TestLifecycle(MoatTestCase):
    def test_development_certificate_created_once_then_reused(self):
        be = self.backend()
        state = os.path.join(self.moat_tmp(), "state")
        m = self.moat("--backend", be.addr, certs=None, state_dir=state)
        self.assertRegex(m.stderr(), r"development certificate created cert=\S+localhost.pem "
                                     r"ca=\S+ca.pem \(trust it: curl --cacert \S+ca.pem\)")
        files = {n: open(os.path.join(state, n), "rb").read()
                 for n in ("ca.pem", "ca.key", "localhost.pem", "localhost.key")}
        for key in ("ca.key", "localhost.key"):
            mode = stat.S_IMODE(os.stat(os.path.join(state, key)).st_mode)
            self.assertEqual(mode, 0o600, key)
        for host in ("localhost", "127.0.0.1"):
            p = subprocess.run(["curl", "-sS", "--cacert", os.path.join(state, "ca.pem"),
                                "https://%s:%d/dev" % (host, m.port)],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b'"/dev"', p.stdout)
        self.stop_clean(m)
        m2 = self.moat("--backend", be.addr, certs=None, state_dir=state)
        self.assertIn("development certificate reused", m2.stderr())
        for n, data in files.items():
            self.assertEqual(open(os.path.join(state, n), "rb").read(), data, n)
        self.stop_clean(m2)

    def test_state_dir_from_environment(self):
        be = self.backend()
        state = os.path.join(self.moat_tmp(), "from-env")
        env = dict(os.environ, MOAT_STATE_DIR=state)
        m = self.moat("--backend", be.addr, certs=None, state_dir="", env=env)
        self.assertTrue(os.path.exists(os.path.join(state, "ca.pem")), m.stderr())
        self.stop_clean(m)

    def test_startup_line_and_access_log(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "2")
        self.assertRegex(m.stderr(), r"info main moat \d+\.\d+\.\d+ started listen=127\.0\.0\.1:"
                                     r"%d backends=%s workers=2 tls=\"ECDSA P-256" %
                         (m.port, re.escape(be.addr)))
        rc, out, err = curl("-A", "itest-agent", m.url("/logged?q=1"))
        self.assertEqual(rc, 0, err)
        rc, out, err = curl("-o", "/dev/null", m.url("/bytes/1234"))
        self.assertEqual(rc, 0, err)
        self.stop_clean(m)
        lines = m.stdout().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                                   r'"GET /logged\?q=1 HTTP/1\.1" 200 \d+ "-" "itest-agent" '
                                   r'\d+\.\d{3} ' + re.escape(be.addr) + " [0-9a-f]{32}$")
        self.assertIn('"GET /bytes/1234 HTTP/1.1" 200 1234 ', lines[1])

    def test_sigterm_lets_in_flight_request_finish(self):
        be = self.backend()
        m = self.moat("--backend", be.addr)
        result = {}

        def slow_request():
            result["curl"] = curl(m.url("/slow/2"))

        t = threading.Thread(target=slow_request)
        t.start()
        deadline = time.monotonic() + 10
        while not be.seen and time.monotonic() < deadline:  # the request reached the backend
            time.sleep(0.02)
        self.assertTrue(be.seen)
        m.proc.send_signal(signal.SIGTERM)
        closed = "draining: listeners closed"
        self.assertEqual(m.wait_log(closed, m.workers).count(closed), m.workers)
        # No new connections are accepted while draining.
        rc, _, _ = curl("--max-time", "3", m.url("/new"))
        self.assertNotEqual(rc, 0)
        t.join(30)
        rc, out, err = result["curl"]
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"slow done\n")
        self.assertEqual(m.proc.wait(timeout=30), 0)
        m.stopped = True
        m.check_clean(self)

    def test_drain_timeout_bounds_the_stop(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--drain-timeout", "0.5")
        t = threading.Thread(target=lambda: curl("--max-time", "20", m.url("/slow/8")))
        t.start()
        deadline = time.monotonic() + 10
        while not be.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        self.assertEqual(m.stop(), 0)
        self.assertLess(time.monotonic() - started, 5)
        m.check_clean(self)
        t.join(30)

    def test_two_workers_serve_many_connections(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "2")
        errors = []

        def client(n):
            try:
                for i in range(10):
                    s = tls_connect(m.port)
                    s.sendall(b"GET /w/%d/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % (n, i))
                    st, _, body = read_response(s.makefile("rb"))
                    s.close()
                    if st != 200 or json.loads(body)["path"] != "/w/%d/%d" % (n, i):
                        errors.append((n, i, st))
            except Exception as e:  # reported below
                errors.append((n, repr(e)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(be.seen), 80)
        self.stop_clean(m)

    def moat_tmp(self):
        import tempfile
        import shutil
        d = tempfile.mkdtemp(prefix="moat-it-state-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


if __name__ == "__main__":
    unittest.main()
