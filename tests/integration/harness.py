"""Integration-test harness: real moat processes, real backends, real TLS clients, loopback only.

Everything a test starts is stopped by the test's own cleanup, by PID; every socket operation
has a timeout, every loop a bound.
"""
import atexit
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOAT_BIN = os.environ.get("MOAT_BIN", os.path.join(REPO, "build", "moat"))
SANITIZED = os.environ.get("MOAT_SANITIZED") == "1"
IO_TIMEOUT = 30 if SANITIZED else 15


def pattern(n):
    """n deterministic bytes (so a body's checksum is known without keeping it)."""
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---- certificates ---------------------------------------------------------------------------

class Certs:
    """A CA with an ECDSA P-256 leaf and an RSA 2048 leaf for localhost, 127.0.0.1 and ::1,
    plus a stray key matching neither (made once per process with the openssl CLI)."""

    _dir = None

    @classmethod
    def dir(cls):
        if cls._dir is None:
            d = tempfile.mkdtemp(prefix="moat-it-certs-")
            script = """
set -e
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3 -subj /CN=moat-test-CA -out ca.pem
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\nextendedKeyUsage=serverAuth\\n' > ext
openssl ecparam -name prime256v1 -genkey -noout -out ec.key
openssl req -new -key ec.key -subj /CN=localhost -out ec.csr
openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out ec.pem
openssl genrsa -out rsa.key 2048
openssl req -new -key rsa.key -subj /CN=localhost -out rsa.csr
openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out rsa.pem
openssl ecparam -name prime256v1 -genkey -noout -out stray.key
"""
            subprocess.run(["sh", "-c", script], cwd=d, check=True, capture_output=True,
                           timeout=120)
            atexit.register(shutil.rmtree, d, True)
            cls._dir = d
        return cls._dir

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir(), name)

    @classmethod
    def client_context(cls, **kw):
        ctx = ssl.create_default_context(cafile=cls.path("ca.pem"))
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx


# ---- backends -------------------------------------------------------------------------------

class EchoHandler(http.server.BaseHTTPRequestHandler):
    """GET/POST/PUT/DELETE /anything: JSON of what arrived (method, path, headers, body length
    and sha256). /bytes/N: N pattern bytes (Content-Length). /chunked/N: N bytes, chunked.
    /slow/S: waits S seconds, then answers. /status/N: an empty response with status N.
    /hop: a response carrying hop-by-hop headers. Every request is recorded."""

    protocol_version = "HTTP/1.1"
    server_version = "echo"

    def log_message(self, *args):
        pass

    def read_exactly(self, left, h):
        """Reads left bytes into the hash h; returns how many."""
        n = left
        while left:
            d = self.rfile.read(min(left, 1 << 20))
            if not d:
                raise ConnectionError("body cut short")
            h.update(d)
            left -= len(d)
        return n

    def read_body(self):
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                n += self.read_exactly(size, h)
                self.rfile.readline()
        else:
            n = self.read_exactly(int(self.headers.get("Content-Length", 0)), h)
        return n, h.hexdigest()

    def reply(self, status, body=b"", headers=(), length=True):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n, digest = self.read_body()
        record = {"method": self.command, "path": self.path,
                  "headers": [[k, v] for k, v in self.headers.items()],
                  "length": n, "sha256": digest, "port": self.server.server_address[1],
                  "client": self.client_address[0], "peer_port": self.client_address[1]}
        self.server.seen.append(record)
        parts = self.path.split("/")
        if self.path.startswith("/bytes/"):
            n = int(parts[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                block = pattern(65536)  # streamed: a GiB never sits in memory
                for off in range(0, n, 65536):
                    self.wfile.write(block[:min(65536, n - off)])
        elif self.path.startswith("/chunked/"):
            total = int(parts[2])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = pattern(total)
            for off in range(0, total, 100000):
                piece = data[off:off + 100000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/slow/"):
            time.sleep(float(parts[2]))
            self.reply(200, b"slow done\n")
        elif self.path.startswith("/status/"):
            code = int(parts[2])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/hop":
            self.reply(200, b"hop\n", [("Connection", "X-Secret"), ("X-Secret", "1"),
                                        ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "x"),
                                        ("Upgrade", "h2c"), ("X-Kept", "yes")])
        else:
            body = json.dumps(record).encode()
            self.reply(200, body, [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


class Backend:
    """A threaded HTTP/1.1 keep-alive backend on 127.0.0.1, stopped by stop()."""

    def __init__(self, handler=EchoHandler, idle_close_after=None):
        handler_cls = handler
        if idle_close_after is not None:
            # Closes a kept-alive connection after this many idle seconds, like a backend
            # with a short keep-alive timeout.
            class Idle(handler):
                timeout = idle_close_after
            handler_cls = Idle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a peer moat cut off on purpose is not news
        self.server = Server(("127.0.0.1", 0), handler_cls)
        self.server.seen = []
        self.port = self.server.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self):
        return self.server.seen

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    """A port nobody listens on (bound then released): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- moat -----------------------------------------------------------------------------------

STARTED = re.compile(r" main moat \S+ started listen=(\S+) .* workers=(\d+) ")


def write_config(path, body):
    """Writes a configuration file: one listener on an ephemeral loopback port with the test
    ECDSA certificate, then body (YAML). Atomically: moat never reads a half-written file."""
    with open(path + ".tmp", "w") as f:
        f.write("""listeners:
  - listen: 127.0.0.1:0
    tls:
      certificates:
        - cert: %s
          key: %s
""" % (Certs.path("ec.pem"), Certs.path("ec.key")))
        f.write(body)
    os.replace(path + ".tmp", path)


class Moat:
    """One moat process. Ports come from its start-up line (it listens on port 0)."""

    def __init__(self, *args, listen=("127.0.0.1:0",), certs="ec", state_dir=None, env=None,
                 wait=True):
        self.tmp = tempfile.mkdtemp(prefix="moat-it-")
        self.state_dir = os.path.join(self.tmp, "state") if state_dir is None else state_dir
        cmd = [MOAT_BIN]
        for l in listen:
            cmd += ["--listen", l]
        if certs == "ec":
            cmd += ["--cert", Certs.path("ec.pem"), "--key", Certs.path("ec.key")]
        elif certs == "both":
            cmd += ["--cert", Certs.path("ec.pem"), "--key", Certs.path("ec.key"),
                    "--cert", Certs.path("rsa.pem"), "--key", Certs.path("rsa.key")]
        if self.state_dir:
            cmd += ["--state-dir", self.state_dir]
        cmd += list(args)
        self.cmd = cmd
        self.out_path = os.path.join(self.tmp, "stdout")
        self.err_path = os.path.join(self.tmp, "stderr")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env)
        self.ports = []
        self.stopped = False
        if wait:
            self.wait_started()

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def reload(self, until):
        """SIGHUP, then waits (bounded) until stderr says until; returns stderr."""
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_log(until)

    def wait_log(self, text, count=1, timeout=IO_TIMEOUT):
        """Waits (bounded) until stderr holds text count times; returns stderr. The caller
        asserts what it needs: a timeout here only ends the wait."""
        deadline = time.monotonic() + timeout
        while self.stderr().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.stderr()

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_started(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = STARTED.search(self.stderr())
            if m:
                self.listen = m.group(1).split(",")
                self.ports = [int(a.rsplit(":", 1)[1]) for a in self.listen]
                self.port = self.ports[0]
                self.workers = int(m.group(2))
                return
            if self.proc.poll() is not None:
                raise AssertionError("moat exited %d at start:\n%s" %
                                     (self.proc.returncode, self.stderr()))
            time.sleep(0.02)
        raise AssertionError("moat did not start in %ds:\n%s" % (timeout, self.stderr()))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops moat (by its PID) and returns its exit status."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError("moat did not stop within %ds" % timeout)
        self.out.close()
        self.err.close()
        return rc

    def check_clean(self, testcase):
        """The sanitizers found nothing (when built with them)."""
        text = self.stderr()
        for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            testcase.assertNotIn(marker, text, "sanitizer report in moat's stderr")

    def cleanup(self):
        if not self.stopped:
            self.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self, path="/", host="localhost"):
        return "https://%s:%d%s" % (host, self.port, path)


# ---- clients --------------------------------------------------------------------------------

def curl(*args, timeout=IO_TIMEOUT * 4):
    """Runs curl trusting the test CA; returns (returncode, stdout bytes, stderr text)."""
    cmd = ["curl", "-sS", "--cacert", Certs.path("ca.pem"), "--max-time", str(timeout)]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def tls_connect(port, host="127.0.0.1", ctx=None, server_hostname="localhost"):
    ctx = ctx or Certs.client_context()
    raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=server_hostname)


def recv_all(sock):
    """Everything the peer sends until it closes."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_response(sock_file, method="GET"):
    """Reads one HTTP/1.1 response from a binary file object: (status, headers dict with
    lower-case names, body bytes). Handles Content-Length and chunked."""
    line = sock_file.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = sock_file.readline()
        if h in (b"\r\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    body = b""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, body
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        while True:
            size = int(sock_file.readline().split(b";")[0], 16)
            if size == 0:
                sock_file.readline()
                break
            body += sock_file.read(size)
            sock_file.readline()
    elif "content-length" in headers:
        body = sock_file.read(int(headers["content-length"][0]))
    else:
        body = sock_file.read()
    return status, headers, body


class MoatTestCase(unittest.TestCase):
    """Starts backends and moat per test and stops them, by PID, whatever happens."""

    def backend(self, **kw):
        b = Backend(**kw)
        self.addCleanup(b.stop)
        return b

    def raw_backend(self, handler, **attrs):
        """A threaded TCP server on 127.0.0.1 with a hand-written handler (for backends that
        misbehave on purpose); attrs become attributes of the server, for the handler to use.
        Its address is server.addr."""
        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True
        srv = Server(("127.0.0.1", 0), handler)
        for k, v in attrs.items():
            setattr(srv, k, v)
        srv.addr = "127.0.0.1:%d" % srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return srv

    def moat(self, *args, **kw):
        m = Moat(*args, **kw)
        self.addCleanup(m.cleanup)
        return m

    def tmp_dir(self):
        d = tempfile.mkdtemp(prefix="moat-it-%s-" % self.id().split(".")[-1])
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def moat_config(self, body, *args, **kw):
        """moat -c FILE with write_config(FILE, body); returns (FILE, the moat)."""
        path = os.path.join(self.tmp_dir(), "moat.yaml")
        write_config(path, body)
        return path, self.moat("-c", path, *args, listen=(), certs=None, state_dir="", **kw)

    def stop_clean(self, m):
        rc = m.stop()
        self.assertEqual(rc, 0, "moat exit status; stderr:\n" + m.stderr()[-3000:])
        m.check_clean(self)
