"""Peers that vanish or misbehave mid-exchange: moat never pools a backend connection it cannot
trust, never passes off a truncated response as complete, and keeps serving everyone else."""
import socketserver
import time

from harness import MoatTestCase, curl, pattern, read_response, tls_connect


class Misbehaving(socketserver.StreamRequestHandler):
    """/cut: announces 1000 bytes, sends 10, closes. /ambiguous: Content-Length and
    Transfer-Encoding together. /early: answers 413 at once, without reading the body.
    /upload: reads the whole Content-Length body before answering, and records in uploads how
    many body bytes came before the connection ended, if it ended first. Anything else: 200 "ok"
    with keep-alive. Records each connection's requests."""

    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            path = line.split()[1]
            length = 0
            while True:
                field = self.rfile.readline()
                if field in (b"\r\n", b""):
                    break
                if field.lower().startswith(b"content-length:"):
                    length = int(field.split(b":")[1])
            self.server.paths.append((path, self.client_address[1]))
            if path == b"/upload":
                got = 0
                while got < length:
                    data = self.rfile.read1(min(65536, length - got))
                    if not data:
                        self.server.uploads.append(got)  # moat closed it mid-body
                        return
                    got += len(data)
            if path == b"/cut":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                return
            if path == b"/ambiguous":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                time.sleep(0.5)
                return
            if path == b"/early":
                self.wfile.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class TestVanish(MoatTestCase):
    def setUp(self):
        self.srv = self.raw_backend(Misbehaving, paths=[], uploads=[])
        self.m = self.moat("--backend", self.srv.addr, "--workers", "1")

    def get(self, path):
        rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", self.m.url(path))
        return rc, out

    def port_of_last(self, path):
        ports = [p for (q, p) in self.srv.paths if q == path]
        return ports[-1] if ports else None

    def test_backend_cut_mid_response_is_not_passed_off_as_complete(self):
        rc, code = self.get("/cut")
        self.assertEqual(rc, 18, "curl must see a partial transfer, not a complete response")
        self.assertEqual(self.get("/next"), (0, b"200"))
        self.assertIn("mid-response", self.m.stderr())
        self.stop_clean(self.m)

    def test_ambiguous_backend_response_gives_502_and_is_never_reused(self):
        self.assertEqual(self.get("/before")[1], b"200")
        self.assertEqual(self.get("/ambiguous")[1], b"502")
        used = self.port_of_last(b"/ambiguous")
        self.assertEqual(self.get("/after")[1], b"200")
        self.assertNotEqual(self.port_of_last(b"/after"), used)
        self.stop_clean(self.m)

    def test_backend_answering_before_the_body_keeps_both_sides_in_step(self):
        s = tls_connect(self.m.port)
        f = s.makefile("rb")
        s.sendall(b"POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        st, h, _ = read_response(f)
        self.assertEqual(st, 413)
        f.close()
        s.close()
        self.assertEqual(self.get("/after-early"), (0, b"200"))
        self.assertNotEqual(self.port_of_last(b"/after-early"), self.port_of_last(b"/early"))
        self.stop_clean(self.m)

    def wait_for(self, what, check):
        deadline = time.monotonic() + 15
        while not check():
            self.assertLess(time.monotonic(), deadline, "waited in vain for " + what)
            time.sleep(0.02)

    def test_client_vanishing_mid_upload_closes_that_backend_connection(self):
        self.assertEqual(self.get("/warm")[1], b"200")
        pooled = self.port_of_last(b"/warm")
        s = tls_connect(self.m.port)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n")
        s.sendall(pattern(1 << 20))
        # The backend reads the body as it comes: the exchange is open when the client goes.
        self.wait_for("the upload at the backend", lambda: self.port_of_last(b"/upload"))
        s.close()  # gone, 9 MB short
        self.wait_for("the backend connection to end", lambda: self.srv.uploads)
        self.assertLess(self.srv.uploads[0], 10000000)
        self.assertEqual(self.get("/after")[1], b"200")
        self.assertNotIn(self.port_of_last(b"/after"), (pooled, self.port_of_last(b"/upload")))
        self.stop_clean(self.m)

    def test_client_vanishing_mid_download_keeps_moat_serving(self):
        be = self.backend()  # the echo backend serves big responses
        m = self.moat("--backend", be.addr, "--workers", "1")
        s = tls_connect(m.port)
        s.sendall(b"GET /bytes/104857600 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = 0
        while got < (1 << 20):
            got += len(s.recv(65536))
        s.close()
        rc, out, err = curl(m.url("/bytes/10"))
        self.assertEqual((rc, out), (0, pattern(10)))
        self.stop_clean(m)
        self.stop_clean(self.m)
