"""TLS as clients meet it: versions, suites, certificate choice, IPv6, plain HTTP on the TLS
port, close_notify."""
import socket
import ssl
import subprocess
import unittest

from harness import IO_TIMEOUT, Certs, MoatTestCase, curl, have_ipv6, recv_all, tls_connect


def s_client(port, *args, data=b"", timeout=30):
    """openssl s_client against moat; returns its stdout+stderr text."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
           "localhost", "-CAfile", Certs.path("ca.pem"), "-verify_return_error"] + list(args)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    return (p.stdout + p.stderr).decode(errors="replace")


class TestTls(MoatTestCase):
    def setUp(self):
        self.be = self.backend()
        self.m = self.moat("--backend", self.be.addr, certs="both")

    def test_curl_tls13_and_tls12(self):
        for flags, version in ((["--tlsv1.3"], "TLSv1.3"),
                               (["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2")):
            with self.subTest(version=version):
                rc, out, err = curl("-v", *flags, self.m.url("/hello"))
                self.assertEqual(rc, 0, err)
                self.assertIn("SSL connection using " + version, err)
                self.assertIn(b'"path": "/hello"', out)

    def test_s_client_versions_and_suites(self):
        out = s_client(self.m.port, "-tls1_3", data=b"Q\n")
        self.assertIn("TLSv1.3", out)
        self.assertIn("Verify return code: 0 (ok)", out)
        out = s_client(self.m.port, "-tls1_2", data=b"Q\n")
        self.assertRegex(out, r"Protocol\s*: TLSv1.2")
        self.assertRegex(out, r"Cipher\s*: ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)")
        # Older versions and CBC suites are refused.
        out = s_client(self.m.port, "-tls1_1", data=b"Q\n")
        self.assertIn("Cipher is (NONE)", out)
        self.assertIn("alert protocol version", out)
        out = s_client(self.m.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256", data=b"Q\n")
        self.assertIn("Cipher is (NONE)", out)
        self.assertIn("alert handshake failure", out)

    def test_each_client_gets_the_key_type_it_supports(self):
        out = s_client(self.m.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                       data=b"Q\n")
        self.assertIn("Peer signature type: RSA", out)
        out = s_client(self.m.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                       data=b"Q\n")
        self.assertIn("Peer signature type: ECDSA", out)
        out = s_client(self.m.port, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256", data=b"Q\n")
        self.assertRegex(out, r"Peer signature type: RSA(-PSS)?")
        out = s_client(self.m.port, "-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256", data=b"Q\n")
        self.assertIn("Peer signature type: ECDSA", out)

    def test_alpn_http11(self):
        ctx = Certs.client_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with tls_connect(self.m.port, ctx=ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")

    def test_plain_http_on_tls_port_gets_400(self):
        with socket.create_connection(("127.0.0.1", self.m.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = recv_all(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"HTTPS", data)
        self.assertEqual(self.be.seen, [])

    def test_close_notify_on_orderly_close(self):
        ctx = Certs.client_context()
        raw = socket.create_connection(("127.0.0.1", self.m.port), timeout=IO_TIMEOUT)
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = recv_all(s)  # a missing close_notify raises SSLEOFError here
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "))

    def test_garbage_handshake_does_not_hurt_others(self):
        with socket.create_connection(("127.0.0.1", self.m.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 10)
            s.settimeout(IO_TIMEOUT)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
        rc, out, err = curl(self.m.url("/after"))
        self.assertEqual(rc, 0, err)

    def tearDown(self):
        self.stop_clean(self.m)


@unittest.skipUnless(have_ipv6(), "no IPv6 loopback here")
class TestIpv6(MoatTestCase):
    def test_ipv6_listener(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, listen=("[::1]:0", "127.0.0.1:0"))
        self.assertTrue(m.listen[0].startswith("[::1]:"), m.listen)
        rc, out, err = curl("https://[::1]:%d/v6" % m.ports[0])
        self.assertEqual(rc, 0, err)
        self.assertIn(b'"path": "/v6"', out)
        rc, out, err = curl("https://127.0.0.1:%d/v4" % m.ports[1])
        self.assertEqual(rc, 0, err)
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
