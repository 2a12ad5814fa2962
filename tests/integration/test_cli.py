"""The command line: version, help, bad flags (exit 2), bad certificates (exit 1, before any
port is opened)."""
import socket
import subprocess
import unittest

from harness import MOAT_BIN, Certs, free_port


def run(*args, timeout=20):
    return subprocess.run([MOAT_BIN] + list(args), capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, text=True)


class TestCli(unittest.TestCase):
    def test_version(self):
        p = run("--version")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^moat \d+\.\d+\.\d+\nTLS engine: mbedTLS 3\.6\.\d+, "
                                   r"(moat's build, accelerated by OpenSSL 3\.\S+|Debian's "
                                   r"library)\n$")

    def test_help(self):
        p = run("--help")
        self.assertEqual(p.returncode, 0)
        for flag in ("--listen", "--cert", "--key", "--backend", "--workers", "--trusted-proxy"):
            self.assertIn(flag, p.stdout)

    def test_bad_flags_exit_2_with_usage(self):
        for args, needle in ((["--frob"], "unknown option '--frob'"),
                             (["--backend"], "--backend needs a value"),
                             (["--backend", "localhost"], "missing port"),
                             (["--backend", "a:1", "--workers", "0"], "--workers"),
                             (["--listen", "0.0.0.0:8443"], "at least one --backend")):
            with self.subTest(args=args):
                p = run(*args)
                self.assertEqual(p.returncode, 2)
                self.assertIn(needle, p.stderr)
                self.assertIn("usage: moat", p.stderr)

    def assert_refused_before_listening(self, cert, key, needle):
        port = free_port()
        p = run("--listen", "127.0.0.1:%d" % port, "--backend", "127.0.0.1:1",
                "--cert", cert, "--key", key)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(needle, p.stderr)
        self.assertNotIn("started", p.stderr)
        with socket.socket() as s:  # the port was never opened: it binds freely
            s.bind(("127.0.0.1", port))

    def test_missing_cert_file(self):
        self.assert_refused_before_listening("/nonexistent/site.pem", Certs.path("ec.key"),
                                             "/nonexistent/site.pem")

    def test_missing_key_file(self):
        self.assert_refused_before_listening(Certs.path("ec.pem"), "/nonexistent/site.key",
                                             "/nonexistent/site.key")

    def test_key_not_matching_cert(self):
        self.assert_refused_before_listening(Certs.path("ec.pem"), Certs.path("stray.key"),
                                             "does not match")

    def test_cert_that_is_not_pem(self):
        self.assert_refused_before_listening(Certs.path("ext"), Certs.path("ec.key"),
                                             "not a PEM certificate")


if __name__ == "__main__":
    unittest.main()
