"""Certificates swapped without a reload: files renamed into place while handshakes run (none
fails, the new certificate appears, a connection opened before goes on), a bad file that keeps
the old certificate and says why, the admin's PUT /certificates/reload, and the expiry
metric."""
import http.client
import os
import re
import shutil
import threading
import time
import unittest

from harness import Certs, MoatTestCase, tls_connect

ADMIN = re.compile(r"admin listening on http://127\.0\.0\.1:(\d+)")


def replace(src, dst):
    """What renewal tools do: write beside, then rename over (atomic for readers)."""
    shutil.copy(src, dst + ".new")
    os.replace(dst + ".new", dst)


def served_cert(port):
    s = tls_connect(port)
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


class TestCertSwap(MoatTestCase):
    def start(self):
        backend = self.backend()
        d = self.tmp_dir()
        cert, key = os.path.join(d, "site.pem"), os.path.join(d, "site.key")
        shutil.copy(Certs.path("ec.pem"), cert)
        shutil.copy(Certs.path("ec.key"), key)
        os.chmod(key, 0o600)
        m = self.moat("--backend", backend.addr, "--cert", cert, "--key", key,
                      "--admin", "127.0.0.1:0", certs=None)
        return m, cert, key

    def test_files_renamed_into_place_while_handshakes_run(self):
        m, cert, key = self.start()
        before = served_cert(m.port)
        kept = http.client.HTTPSConnection("localhost", m.port, context=Certs.client_context(),
                                           timeout=10)
        self.addCleanup(kept.close)
        kept.request("GET", "/before")
        resp = kept.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        failures, done = [], threading.Event()

        def handshakes():
            n, deadline = 0, time.monotonic() + 30
            while not done.is_set() and n < 250 and time.monotonic() < deadline:
                n += 1
                try:
                    served_cert(m.port)
                except Exception as e:  # any failed handshake counts
                    failures.append(repr(e))
        threads = [threading.Thread(target=handshakes) for _ in range(4)]
        for t in threads:
            t.start()
        replace(Certs.path("rsa.key"), key)   # the key first: for an instant the pair
        replace(Certs.path("rsa.pem"), cert)  # mismatches, and the settle wait covers it
        m.wait_log("main certificates swapped (their files changed)")
        done.set()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(failures, [])
        after = served_cert(m.port)
        self.assertNotEqual(after, before)
        self.assertEqual(after, served_cert(m.port))
        kept.request("GET", "/after")  # opened before the swap: goes on
        resp = kept.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        self.assertNotIn("configuration 2", m.stderr())  # no reload happened
        self.stop_clean(m)

    def test_a_bad_file_keeps_the_old_certificate_and_the_admin_can_swap(self):
        m, cert, key = self.start()
        admin = int(ADMIN.search(m.stderr()).group(1))
        before = served_cert(m.port)
        with open(cert + ".new", "w") as f:
            f.write("not a certificate\n")
        os.replace(cert + ".new", cert)
        m.wait_log("main certificates not swapped (their files changed), the running ones "
                   "stay: %s: not a PEM certificate chain" % cert)
        self.assertEqual(served_cert(m.port), before)

        def put():
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
            try:
                conn.request("PUT", "/certificates/reload")
                resp = conn.getresponse()
                return resp.status, resp.read().decode()
            finally:
                conn.close()
        status, body = put()
        self.assertEqual(status, 422, body)
        self.assertIn("not a PEM certificate chain", body)
        shutil.copy(Certs.path("rsa.pem"), cert + ".x")
        # Both files at once, as the admin would after writing them.
        shutil.copy(Certs.path("rsa.key"), key)
        os.replace(cert + ".x", cert)
        status, body = put()
        self.assertEqual(status, 200, body)
        self.assertIn("certificates swapped: RSA", body)
        self.assertNotEqual(served_cert(m.port), before)
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        found = re.search(r'moat_tls_certificate_not_after_seconds\{listener="127\.0\.0\.1:0",'
                          r'file="%s"\} (\d+)' % re.escape(cert), text)
        self.assertIsNotNone(found, text[-1500:])
        self.assertGreater(int(found.group(1)), time.time())
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
