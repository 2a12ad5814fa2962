"""Fatal alerts reach the client before moat closes: a bad record after the handshake gets the
alert mbedTLS queued (encrypted, under the session's keys), and handshakes mbedTLS 3.6 would
end silently (no group in common, an invalid key share) get the alert their error names. Each
check reads what crosses the wire with a client of our own: Python's ssl over memory BIOs, or a
ClientHello written byte by byte."""
import os
import socket
import ssl
import struct
import subprocess
import threading

from harness import IO_TIMEOUT, Certs, MoatTestCase, curl

ALERT = 21
HANDSHAKE_FAILURE, ILLEGAL_PARAMETER = 40, 47
P256, P521 = 0x0017, 0x0019


def records(sock):
    """Every TLS record the server sends until it closes: [(content type, payload)]."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            raise AssertionError("moat reset the connection: whatever it sent may be lost")
        if not chunk:
            break
        data += chunk
    out = []
    while len(data) >= 5:
        ctype, _, length = struct.unpack("!BHH", data[:5])
        out.append((ctype, data[5:5 + length]))
        data = data[5 + length:]
    return out


def client_hello(groups, shares):
    """A TLS 1.3 ClientHello: AES-GCM and ChaCha20 suites, ECDSA and RSA-PSS signatures, the
    named groups, and one key share (group, key bytes) per entry of shares."""
    def ext(kind, body):
        return struct.pack("!HH", kind, len(body)) + body

    name = b"localhost"
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    group_list = b"".join(struct.pack("!H", g) for g in groups)
    sigalgs = b"".join(struct.pack("!H", a) for a in (0x0403, 0x0804, 0x0805, 0x0401))
    ks = b"".join(struct.pack("!HH", g, len(k)) + k for g, k in shares)
    extensions = (ext(0x0000, sni) +
                  ext(0x000a, struct.pack("!H", len(group_list)) + group_list) +
                  ext(0x000d, struct.pack("!H", len(sigalgs)) + sigalgs) +
                  ext(0x002b, b"\x02\x03\x04") +
                  ext(0x002d, b"\x01\x01") +
                  ext(0x0033, struct.pack("!H", len(ks)) + ks))
    suites = b"\x13\x01\x13\x02\x13\x03"
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) +
            struct.pack("!H", len(suites)) + suites + b"\x01\x00" +
            struct.pack("!H", len(extensions)) + extensions)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


class MemoryClient:
    """A TLS client over memory BIOs on a plain socket, so a test can touch each record."""

    def __init__(self, port, version):
        ctx = Certs.client_context()
        ctx.minimum_version = ctx.maximum_version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError("closed during the handshake")
                self.inc.write(data)
        self.flush()

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def request(self, raw):
        """Sends raw and returns one whole response (framed by Content-Length)."""
        self.tls.write(raw)
        self.flush()
        got = b""
        while True:
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    return got
            try:
                got += self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError("closed before a whole response: %r" % got)
                self.inc.write(data)

    def sealed(self, raw):
        """The records that carry raw, as they would go on the wire."""
        self.tls.write(raw)
        return self.out.read()


class TestAlerts(MoatTestCase):
    def setUp(self):
        self.be = self.backend()
        self.m = self.moat("--backend", self.be.addr, "--workers", "1")

    def assert_still_serving(self):
        rc, out, err = curl(self.m.url("/after"))
        self.assertEqual(rc, 0, err)

    def test_bad_record_after_handshake_gets_its_alert(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with self.subTest(version=version.name):
                c = MemoryClient(self.m.port, version)
                # A first request proves the session works both ways.
                self.assertTrue(c.request(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
                                .startswith(b"HTTP/1.1 200 "))
                wire = bytearray(c.sealed(b"GET /bad HTTP/1.1\r\nHost: localhost\r\n\r\n"))
                wire[-1] ^= 0x01  # the last byte of the AEAD tag: the record fails its check
                c.sock.sendall(wire)
                answer = records(c.sock)
                c.sock.close()
                # One encrypted record (the alert), then the close: no reset, nothing else.
                self.assertEqual(len(answer), 1, answer)
                c.inc.write(b"".join(struct.pack("!BHH", t, 0x0303, len(p)) + p
                                     for t, p in answer))
                with self.assertRaises(ssl.SSLError) as e:
                    c.tls.read(100)
                self.assertIn("BAD_RECORD_MAC", str(e.exception))
                self.assertEqual([r["path"] for r in self.be.seen].count("/bad"), 0)
        self.assertIn("tls read failed: -0x7180", self.m.stderr())
        self.assert_still_serving()
        self.stop_clean(self.m)

    def handshake_answer(self, hello):
        with socket.create_connection(("127.0.0.1", self.m.port), timeout=IO_TIMEOUT) as s:
            s.sendall(hello)
            return records(s)

    def test_no_group_in_common_gets_handshake_failure(self):
        # moat offers X25519, P-256 and P-384; this client only P-521.
        answer = self.handshake_answer(client_hello([P521], [(P521, b"\x04" + b"\x01" * 132)]))
        self.assertEqual(answer, [(ALERT, bytes([2, HANDSHAKE_FAILURE]))])
        self.assert_still_serving()
        self.stop_clean(self.m)

    def test_tls12_client_without_a_shared_group_gets_handshake_failure(self):
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.m.port,
                            "-tls1_2", "-groups", "P-521", "-msg"], input=b"", timeout=30,
                           capture_output=True)
        self.assertIn("fatal handshake_failure", p.stdout.decode(errors="replace"))
        self.assert_still_serving()
        self.stop_clean(self.m)

    def test_key_update_gets_unexpected_message(self):
        # mbedTLS 3.6 does not implement KeyUpdate (RFC 8446 §4.6.3): the connection ends, but
        # with an alert that says why instead of a silent close.
        p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.m.port,
                              "-tls1_3", "-msg"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for step in (p.stdout.close, p.stdin.close, p.wait, p.kill):  # run last to first
            self.addCleanup(step)
        seen = b""
        while b"Verify return code" not in seen:  # the handshake is done: commands are read
            line = p.stdout.readline()
            self.assertTrue(line, "s_client ended before the handshake: %r" % seen)
            seen += line
        p.stdin.write(b"k\n")  # s_client's command for a KeyUpdate
        p.stdin.flush()
        # stdin stays open (its end would make s_client close first): s_client ends when moat
        # closes; the timer only bounds a hang.
        watchdog = threading.Timer(30, p.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        out = p.stdout.read()
        self.assertIn(b"KeyUpdate", out)
        self.assertIn(b"fatal unexpected_message", out)
        self.assert_still_serving()
        self.stop_clean(self.m)

    def test_invalid_key_share_gets_illegal_parameter(self):
        # An uncompressed P-256 point that is not on the curve (RFC 8446 §4.2.8.2).
        answer = self.handshake_answer(client_hello([P256], [(P256, b"\x04" + b"\x01" * 64)]))
        # mbedTLS finds the point invalid only after it has written its ServerHello.
        self.assertEqual(answer[-1], (ALERT, bytes([2, ILLEGAL_PARAMETER])), answer)
        self.assert_still_serving()
        self.stop_clean(self.m)
