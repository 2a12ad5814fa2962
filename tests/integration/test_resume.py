"""Session resumption as clients meet it: one process-wide set of ticket keys, so a returning
client resumes whichever worker the kernel hands its connection to, and after a reload; TLS 1.3
and 1.2 (Python's ssl, which is OpenSSL)."""
import unittest

from harness import MoatTestCase
from test_admin import Client


class TestResume(MoatTestCase):
    def test_every_worker_resumes_every_session(self):
        backend = self.backend()
        m = self.moat("--backend", backend.addr, "--workers", "4")
        for tls12 in (False, True):
            with self.subTest(tls12=tls12):
                c = Client(m.port, tls12=tls12)
                self.assertEqual(c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")[0], 200)
                # With keys per worker, a quarter of these would resume.
                for _ in range(16):
                    self.assertEqual(
                        c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")[0], 200)
                self.assertEqual((c.full, c.resumed), (1, 16))
        self.stop_clean(m)

    def test_a_reload_keeps_the_ticket_keys(self):
        backend = self.backend()
        m = self.moat("--backend", backend.addr, "--workers", "2")
        c = Client(m.port)
        self.assertEqual(c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")[0], 200)
        m.reload("configuration 2 in use by every worker")
        for _ in range(4):
            self.assertEqual(c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")[0], 200)
        self.assertEqual((c.full, c.resumed), (1, 4))
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
