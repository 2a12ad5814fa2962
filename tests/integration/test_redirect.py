"""The port-80 redirector (--redirect-http, redirect_http) and HSTS (--hsts, tls.hsts), as
clients meet them: plain HTTP requests get 308 to the same URL on https://, HTTPS responses
carry Strict-Transport-Security, plain ones never do."""
import http.client
import os
import re
import socket
import subprocess
import unittest

from harness import Certs, EchoHandler, MoatTestCase, IO_TIMEOUT

REDIRECT = re.compile(r" main redirect listening on http://127\.0\.0\.1:(\d+) \(to https:// "
                      r"port (\d+)\)")


class OwnHSTS(EchoHandler):
    """Sends its own Strict-Transport-Security."""

    def handle_any(self):
        self.reply(200, b"own\n", [("Strict-Transport-Security", "max-age=60")])

    do_GET = handle_any


def plain(port, method, target, host="example.test", body=None):
    """(status, headers dict, body) of one plain-HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
    try:
        conn.putrequest(method, target, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def https_get(port, path="/"):
    conn = http.client.HTTPSConnection("localhost", port, context=Certs.client_context(),
                                       timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class TestRedirect(MoatTestCase):
    def start(self, *args):
        backend = self.backend()
        m = self.moat("--backend", backend.addr, "--redirect-http", "127.0.0.1:0", *args)
        found = REDIRECT.search(m.stderr())
        self.assertIsNotNone(found, m.stderr())
        return m, int(found.group(1)), int(found.group(2))

    def test_every_request_goes_to_the_same_url_on_https(self):
        m, port, https_port = self.start()
        self.assertEqual(https_port, m.port)  # the TLS listener's port as bound
        for method, target, host, want in (
                ("GET", "/a/b?c=1&d", "example.test", "https://example.test:%d/a/b?c=1&d"),
                ("GET", "/", "example.test:80", "https://example.test:%d/"),   # its port goes
                ("POST", "/form", "Example.Test", "https://Example.Test:%d/form"),
                ("GET", "http://abs.test/x?y", "abs.test", "https://abs.test:%d/x?y"),
                ("GET", "/", "[::1]:80", "https://[::1]:%d/")):
            with self.subTest(method=method, target=target, host=host):
                status, fields, _ = plain(port, method, target, host,
                                          b"x=1" if method == "POST" else None)
                self.assertEqual(status, 308)
                self.assertEqual(fields["location"], want % https_port)
                self.assertNotIn("strict-transport-security", fields)  # never over plain HTTP
        status, fields, body = plain(port, "HEAD", "/h")
        self.assertEqual((status, body), (308, b""))
        # ACME's HTTP-01 path is not redirected (nothing is pending: 404); no Host: 400.
        self.assertEqual(plain(port, "GET", "/.well-known/acme-challenge/tok")[0], 404)
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertIn(b" 400 ", s.recv(4096))
        self.stop_clean(m)

    def test_https_port_443_is_not_written(self):
        backend = self.backend()
        path, m = self.moat_config("pools: {app: {backends: [%s]}}\nredirect_http:\n"
                                   "  listen: 127.0.0.1:0\n  https_port: 443\n" % backend.addr)
        port = int(REDIRECT.search(m.stderr()).group(1))
        self.assertEqual(plain(port, "GET", "/p?q")[1]["location"], "https://example.test/p?q")
        self.stop_clean(m)

    def test_hsts_on_https_responses_only(self):
        m, port, _ = self.start("--hsts", "31536000")
        status, fields, _ = https_get(m.port, "/x")
        self.assertEqual(status, 200)
        self.assertEqual(fields["strict-transport-security"], "max-age=31536000")
        self.assertNotIn("strict-transport-security", plain(port, "GET", "/")[1])
        self.stop_clean(m)
        own = self.backend(handler=OwnHSTS)
        m = self.moat("--backend", own.addr, "--hsts", "31536000")
        self.assertEqual(https_get(m.port)[1]["strict-transport-security"], "max-age=60")
        self.stop_clean(m)

    def test_hsts_in_the_file_and_its_mistakes(self):
        backend = self.backend()
        conf = ("pools: {app: {backends: [%s]}}\nlisteners:\n  - listen: 127.0.0.1:0\n"
                "    tls:\n      certificates: [{cert: %s, key: %s}]\n      hsts: %s\n")
        d = self.tmp_dir()
        good = os.path.join(d, "good.yaml")
        with open(good, "w") as f:
            f.write(conf % (backend.addr, Certs.path("ec.pem"), Certs.path("ec.key"),
                            "{max_age: 63072000, include_subdomains: true, preload: true}"))
        m = self.moat("-c", good, listen=(), certs=None, state_dir="")
        self.assertEqual(https_get(m.port)[1]["strict-transport-security"],
                         "max-age=63072000; includeSubDomains; preload")
        self.stop_clean(m)
        for value, needle in (("{max_age: 600, preload: true}", "preload needs "
                               "include_subdomains: true and max_age of at least 31536000"),
                              ("{include_subdomains: true}", "hsts.max_age: required"),
                              ("{max_age: soon}", "expected a number of seconds")):
            with self.subTest(hsts=value):
                bad = os.path.join(d, "bad.yaml")
                with open(bad, "w") as f:
                    f.write(conf % (backend.addr, Certs.path("ec.pem"), Certs.path("ec.key"),
                                    value))
                p = subprocess.run([os.environ.get("MOAT_BIN", "build/moat"), "-t", "-c", bad],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(needle, p.stderr)


if __name__ == "__main__":
    unittest.main()
