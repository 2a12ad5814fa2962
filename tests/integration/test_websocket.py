"""WebSocket through moat: the Upgrade request is forwarded, the backend's 101 relayed, then
frames flow both ways through TLS with backpressure until either side closes. The backend is a
real WebSocket echo server written with the standard library (RFC 6455 handshake and framing)."""
import base64
import hashlib
import os
import socketserver
import struct
import time

from harness import MoatTestCase, read_response, tls_connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise ConnectionError("stream ended")
    return data


def read_frame(f):
    """One frame: (opcode, payload), unmasking if masked."""
    b0, b1 = read_exact(f, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(f, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(f, 8))[0]
    mask = read_exact(f, 4) if b1 & 0x80 else None
    payload = read_exact(f, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def frame(opcode, payload, masked):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    # XOR with the repeated key, fast enough for a megabyte.
    k = (key * (n // 4 + 1))[:n]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


class EchoWebSocket(socketserver.StreamRequestHandler):
    """Echoes text and binary frames; answers close with close; a text frame "flood" gets 256
    binary frames of 1 MiB back, and how their writing ended ("cut" or "done") is recorded in
    server.floods. A request without Upgrade gets a plain 200, keep-alive."""

    def handle(self):
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            fields = {}
            for line in head.split(b"\r\n")[1:]:
                if b":" in line:
                    k, v = line.split(b":", 1)
                    fields[k.strip().lower()] = v.strip()
            self.server.heads.append(head)
            if fields.get(b"upgrade", b"").lower() != b"websocket" or \
                    self.server.refuse_upgrades:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nno thx\n")
                continue
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                             accept_key(fields[b"sec-websocket-key"]) + b"\r\n\r\n")
            self.wfile.write(frame(1, b"hello from the backend", False))  # speaks first
            while True:
                try:
                    op, payload = read_frame(self.rfile)
                except ConnectionError:
                    return
                if op == 8:
                    self.wfile.write(frame(8, payload, False))
                    return
                if (op, payload) == (1, b"flood"):
                    big = frame(2, bytes(1 << 20), False)
                    try:
                        for _ in range(256):
                            self.wfile.write(big)
                        self.server.floods.append("done")
                    except OSError:
                        self.server.floods.append("cut")
                        return
                    continue
                self.wfile.write(frame(op, payload, False))


class TestWebSocket(MoatTestCase):
    def setUp(self):
        self.ws = self.raw_backend(EchoWebSocket, heads=[], refuse_upgrades=False, floods=[])
        self.m = self.moat("--backend", self.ws.addr)

    def upgrade(self):
        s = tls_connect(self.m.port)
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                  b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        f = s.makefile("rb")
        return s, f, key

    def test_echo_through_moat(self):
        s, f, key = self.upgrade()
        st, h, _ = read_response(f)
        self.assertEqual(st, 101)
        self.assertEqual(h["upgrade"], ["websocket"])
        self.assertEqual(h["sec-websocket-accept"], [accept_key(key).decode()])
        self.assertEqual(read_frame(f), (1, b"hello from the backend"))
        for payload in (b"hi", os.urandom(70000), os.urandom(1 << 20)):
            s.sendall(frame(2, payload, True))
            self.assertEqual(read_frame(f), (2, payload))
        s.sendall(frame(8, b"\x03\xe8bye", True))
        self.assertEqual(read_frame(f), (8, b"\x03\xe8bye"))
        self.assertEqual(f.read(), b"")  # then moat ends the TLS connection
        s.close()
        # The backend saw the upgrade request with its Connection/Upgrade headers.
        head = self.ws.heads[0].lower()
        self.assertIn(b"upgrade: websocket", head)
        self.assertIn(b"connection: upgrade", head)
        self.assertIn(b" 101 ", self.m.stdout().encode())  # logged when the tunnel opened
        self.stop_clean(self.m)

    def test_client_closing_ends_the_tunnel(self):
        s, f, _ = self.upgrade()
        self.assertEqual(read_response(f)[0], 101)
        self.assertEqual(read_frame(f)[0], 1)
        s.sendall(frame(1, b"last words", True))
        self.assertEqual(read_frame(f), (1, b"last words"))
        f.close()  # the socket closes only when its file object is gone too
        s.close()
        # The tunnel ends at once (not at the drain timeout): moat stops quickly.
        started = time.monotonic()
        self.stop_clean(self.m)
        self.assertLess(time.monotonic() - started, 5)

    def test_silent_tunnel_is_closed_after_tunnel_timeout(self):
        m = self.moat("--backend", self.ws.addr, "--tunnel-timeout", "500ms")
        self.m, first = m, self.m
        s, f, _ = self.upgrade()
        self.assertEqual(read_response(f)[0], 101)
        self.assertEqual(read_frame(f)[0], 1)
        started = time.monotonic()
        self.assertEqual(f.read(), b"")  # nothing either way: moat ends it
        self.assertLess(time.monotonic() - started, 3)
        f.close()
        s.close()
        self.assertIn("tunnel idle", m.stderr())
        self.stop_clean(m)
        self.stop_clean(first)

    def test_tunnel_whose_client_stops_reading_is_cut_off(self):
        m = self.moat("--backend", self.ws.addr, "--send-timeout", "500ms")
        self.m, first = m, self.m
        s, f, _ = self.upgrade()
        self.assertEqual(read_response(f)[0], 101)
        self.assertEqual(read_frame(f)[0], 1)
        s.sendall(frame(1, b"flood", True))  # 256 MiB toward us, and we read none of it
        deadline = time.monotonic() + 30
        while "(--send-timeout)" not in m.stderr() or not self.ws.floods:
            self.assertLess(time.monotonic(), deadline, m.stderr())
            time.sleep(0.05)
        self.assertIn("TUNNEL client took no bytes", m.stderr())
        self.assertEqual(self.ws.floods, ["cut"])  # the backend side of the tunnel closed too
        f.close()
        s.close()
        self.stop_clean(m)
        self.stop_clean(first)

    def test_without_101_the_connection_stays_http(self):
        self.ws.refuse_upgrades = True
        s, f, _ = self.upgrade()
        st, _, body = read_response(f)
        self.assertEqual((st, body), (200, b"no thx\n"))
        s.sendall(b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        st, _, body = read_response(f)
        self.assertEqual((st, body), (200, b"no thx\n"))
        s.close()
        self.stop_clean(self.m)
