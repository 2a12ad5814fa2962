"""Access logs through real requests: the moat, combined and JSON formats, stdout/stderr/file
targets, SIGUSR1 reopening under load, and X-Request-Id handling."""
import json
import os
import re
import signal
import ssl
import stat
import tempfile
import shutil
import threading
import time
import unittest

from harness import (IO_TIMEOUT, Certs, MoatTestCase, curl, read_response, tls_connect)

# OpenSSL's names for the TLS 1.2 suites moat allows -> IANA's, which moat logs (TLS 1.3
# suites have the same name in both).
IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

QUOTED = r'"((?:[^"\\\x00-\x1f\x7f-\xff]|\\x[0-9A-F]{2})*)"'  # nginx-escaped text
COMBINED = re.compile(r'^(\S+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] ' +
                      QUOTED + r' (\d{3}) (\d+) ' + QUOTED + ' ' + QUOTED + '$')
MOAT = re.compile(COMBINED.pattern[:-1] + r' (\d+\.\d{3}) (\S+) (\S+)$')
RFC3339_MS = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
HEX32 = re.compile(r'^[0-9a-f]{32}$')


def nginx_unescape(s):
    return re.sub(r'\\x([0-9A-F]{2})', lambda m: chr(int(m.group(1), 16)), s).encode("latin-1")


def request_id_of(record):
    """The X-Request-Id fields the backend received (the echo backend's JSON)."""
    return [v for k, v in record["headers"] if k.lower() == "x-request-id"]


class TestLogs(MoatTestCase):
    def exchange(self, m, raw, ctx=None, server_hostname="localhost", method="GET"):
        """Sends raw request bytes on a new TLS connection; returns (response, TLS socket facts)."""
        s = tls_connect(m.port, ctx=ctx, server_hostname=server_hostname)
        try:
            facts = {"version": s.version(), "cipher": s.cipher()[0]}
            s.sendall(raw)
            return read_response(s.makefile("rb"), method), facts
        finally:
            s.close()

    def log_lines(self, m, stream="stdout"):
        """Stops moat (so every line is written) and returns its access-log lines."""
        self.stop_clean(m)
        text = m.stdout() if stream == "stdout" else m.stderr()
        if stream == "stderr":  # the error log shares stderr: keep the access lines only
            return [l for l in text.splitlines() if not re.match(r"^\d{4}-\d\d-\d\dT", l)]
        return text.splitlines()

    # ---- JSON ---------------------------------------------------------------------------

    def test_json_fields_equal_what_was_sent(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "2", "--access-log-format", "json")
        body = b"hello"
        raw = (b"POST /submit?x=1&y=%22q%22 HTTP/1.1\r\nHost: localhost\r\n"
               b"User-Agent: itest/1.0\r\nReferer: https://ref.example/a\r\n"
               b"Content-Length: 5\r\nConnection: close\r\n\r\n" + body)
        (status, _, resp_body), tls13 = self.exchange(m, raw)
        self.assertEqual(status, 200)
        sent_id = request_id_of(be.seen[-1])

        ctx12 = Certs.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        (status, _, body12), tls12 = self.exchange(
            m, b"GET /twelve HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", ctx=ctx12)
        self.assertEqual(status, 200)

        # A name the client sends by SNI (curl --resolve): logged as sent.
        rc, out, err = curl("-k", "--resolve", "sni.test.example:%d:127.0.0.1" % m.port,
                            "-H", "X-Request-Id: from-curl-1",
                            "https://sni.test.example:%d/curl" % m.port)
        self.assertEqual(rc, 0, err)

        # No SNI at all (an IP literal): null.
        ctx_ip = Certs.client_context(check_hostname=False)
        ctx_ip.verify_mode = ssl.CERT_NONE
        self.exchange(m, b"GET /nosni HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      ctx=ctx_ip, server_hostname=None)

        # A request that never had a head: no method, target, upstream or pool.
        (status, _, _), _ = self.exchange(m, b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n")
        self.assertEqual(status, 400)

        lines = self.log_lines(m)
        self.assertEqual(len(lines), 5, lines)
        recs = [json.loads(l) for l in lines]
        by_target = {r["target"]: r for r in recs}
        keys = ["time", "client", "method", "target", "protocol", "status", "bytes_in",
                "bytes_out", "duration_ms", "upstream", "upstream_ms", "pool", "referer",
                "user_agent", "tls_version", "tls_cipher", "sni", "request_id"]
        for r in recs:
            self.assertEqual(list(r.keys()), keys)
            self.assertRegex(r["time"], RFC3339_MS)
            self.assertEqual(r["client"], "127.0.0.1")
            self.assertIsInstance(r["duration_ms"], int)
            self.assertIsNotNone(r["request_id"])

        r = by_target["/submit?x=1&y=%22q%22"]
        self.assertEqual(r["method"], "POST")
        self.assertEqual(r["protocol"], "HTTP/1.1")
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["bytes_in"], 5)
        self.assertEqual(r["bytes_out"], len(resp_body))
        self.assertEqual(r["upstream"], be.addr)
        self.assertIsInstance(r["upstream_ms"], int)
        self.assertLessEqual(r["upstream_ms"], r["duration_ms"])
        self.assertEqual(r["pool"], "default")
        self.assertEqual(r["referer"], "https://ref.example/a")
        self.assertEqual(r["user_agent"], "itest/1.0")
        self.assertEqual(r["tls_version"], "TLSv1.3")
        self.assertEqual(tls13["version"], "TLSv1.3")
        self.assertEqual(r["tls_cipher"], tls13["cipher"])
        self.assertEqual(r["sni"], "localhost")
        self.assertRegex(r["request_id"], HEX32)
        self.assertEqual(sent_id, [r["request_id"]])

        r = by_target["/twelve"]
        self.assertEqual(r["tls_version"], "TLSv1.2")
        self.assertEqual(tls12["version"], "TLSv1.2")
        self.assertEqual(r["tls_cipher"], IANA[tls12["cipher"]])
        self.assertEqual(r["bytes_out"], len(body12))
        self.assertEqual(r["bytes_in"], 0)
        self.assertIsNone(r["referer"])

        r = by_target["/curl"]
        self.assertEqual(r["sni"], "sni.test.example")
        self.assertEqual(r["request_id"], "from-curl-1")
        self.assertTrue(r["user_agent"].startswith("curl/"))

        self.assertIsNone(by_target["/nosni"]["sni"])

        r = by_target[None]
        self.assertEqual(r["status"], 400)
        for k in ("method", "protocol", "upstream", "upstream_ms", "pool"):
            self.assertIsNone(r[k], k)
        self.assertEqual(r["tls_version"], "TLSv1.3")
        self.assertRegex(r["request_id"], HEX32)

    def test_hostile_values_stay_one_valid_line(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--access-log-format", "json")
        # Quotes, backslashes, a tab, valid UTF-8, a byte that is not UTF-8, a fake JSON end.
        ua = b'evil "agent" \\ \t caf\xc3\xa9 \xff"}\n{"x":1'
        ua = ua.replace(b"\n", b" ")
        raw = (b"GET /h?a=%22b%22 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + ua +
               b"\r\nReferer: \x80\x81\r\nConnection: close\r\n\r\n")
        (status, _, _), _ = self.exchange(m, raw)
        self.assertEqual(status, 200)
        lines = self.log_lines(m)
        self.assertEqual(len(lines), 1, lines)
        r = json.loads(lines[0])
        self.assertEqual(r["user_agent"], ua.decode("utf-8", errors="surrogateescape")
                         .replace("\udcff", "\u00ff"))
        self.assertEqual(r["referer"], "\u0080\u0081")
        lines[0].encode("utf-8")  # valid UTF-8 (stdout() decoded it with replacement: none)
        self.assertNotIn("\ufffd", lines[0])

    # ---- combined and moat --------------------------------------------------------------

    def test_combined_format(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--access-log-format", "combined")
        ua = b'agent "quoted" \\ \t \xff'
        raw = (b"GET /c?q=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + ua +
               b"\r\nConnection: close\r\n\r\n")
        (status, _, body), _ = self.exchange(m, raw)
        self.assertEqual(status, 200)
        raw = (b"GET /bytes/777 HTTP/1.0\r\nHost: localhost\r\nReferer: https://r.example/\r\n"
               b"\r\n")
        (status, _, body777), _ = self.exchange(m, raw)
        self.assertEqual(len(body777), 777)
        lines = self.log_lines(m)
        self.assertEqual(len(lines), 2, lines)
        f = COMBINED.match(lines[0])
        self.assertIsNotNone(f, lines[0])
        ip, when, request, st, size, referer, agent = f.groups()
        self.assertEqual(ip, "127.0.0.1")
        time.strptime(when, "%d/%b/%Y:%H:%M:%S +0000")
        self.assertEqual(request, "GET /c?q=1 HTTP/1.1")
        self.assertEqual((st, size), ("200", str(len(body))))
        self.assertEqual(referer, "-")
        self.assertEqual(agent, r'agent \x22quoted\x22 \x5C \x09 \xFF')
        self.assertEqual(nginx_unescape(agent), ua)
        f = COMBINED.match(lines[1])
        self.assertIsNotNone(f, lines[1])
        self.assertEqual(f.groups()[2:], ("GET /bytes/777 HTTP/1.0", "200", "777",
                                          "https://r.example/", "-"))

    def test_moat_format_ends_with_duration_backend_and_request_id(self):
        be = self.backend()
        m = self.moat("--backend", be.addr)  # moat is the default format
        rc, out, err = curl("-A", "a b", m.url("/m"))
        self.assertEqual(rc, 0, err)
        sent = request_id_of(be.seen[-1])
        lines = self.log_lines(m)
        self.assertEqual(len(lines), 1, lines)
        f = MOAT.match(lines[0])
        self.assertIsNotNone(f, lines[0])
        self.assertEqual(f.group(3), "GET /m HTTP/1.1")
        self.assertEqual(f.group(7), "a b")
        self.assertEqual(f.group(9), be.addr)
        self.assertRegex(f.group(10), HEX32)
        self.assertEqual(sent, [f.group(10)])

    def test_stderr_target(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--access-log", "stderr", "--access-log-format",
                      "combined")
        rc, out, err = curl(m.url("/to-stderr"))
        self.assertEqual(rc, 0, err)
        lines = self.log_lines(m, "stderr")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('"GET /to-stderr HTTP/1.1" 200 ', lines[0])
        self.assertEqual(m.stdout(), "")

    # ---- request ids --------------------------------------------------------------------

    def test_request_id_kept_when_sane_else_generated(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "2", "--access-log-format", "json")
        cases = [
            ("absent", b"", None),
            ("sane", b"X-Request-Id: abc-DEF_123.456:7/8=+\r\n", "abc-DEF_123.456:7/8=+"),
            ("200 chars", b"X-Request-Id: " + b"k" * 200 + b"\r\n", "k" * 200),
            ("201 chars", b"X-Request-Id: " + b"k" * 201 + b"\r\n", None),
            ("space", b"X-Request-Id: a b\r\n", None),
            ("non-ASCII", b"X-Request-Id: caf\xc3\xa9\r\n", None),
            ("twice", b"X-Request-Id: a\r\nX-Request-Id: b\r\n", None),
        ]
        got = {}
        for name, field, want in cases:
            raw = (b"GET /id/" + name.replace(" ", "-").encode() + b" HTTP/1.1\r\n"
                   b"Host: localhost\r\n" + field + b"Connection: close\r\n\r\n")
            (status, _, body), _ = self.exchange(m, raw)
            self.assertEqual(status, 200, name)
            ids = request_id_of(json.loads(body))
            self.assertEqual(len(ids), 1, (name, ids))  # exactly one reaches the backend
            if want is None:
                self.assertRegex(ids[0], HEX32, name)
            else:
                self.assertEqual(ids[0], want, name)
            got[name] = ids[0]
        # Generated ids are unique, here and across many requests on both workers.
        many = set()
        for i in range(40):
            rc, out, err = curl(m.url("/many/%d" % i))
            self.assertEqual(rc, 0, err)
            many.add(request_id_of(json.loads(out))[0])
        self.assertEqual(len(many), 40)
        lines = [json.loads(l) for l in self.log_lines(m)]
        logged = {r["target"]: r["request_id"] for r in lines}
        for name, _, _ in cases:
            self.assertEqual(logged["/id/" + name.replace(" ", "-")], got[name], name)
        self.assertEqual({r["request_id"] for r in lines if r["target"].startswith("/many/")},
                         many)
        self.assertEqual(len({r["request_id"] for r in lines}), len(lines))

    # ---- files and SIGUSR1 --------------------------------------------------------------

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="moat-it-logs-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_file_reopened_on_sigusr1_loses_nothing(self):
        be = self.backend()
        d = self.tmpdir()
        path = os.path.join(d, "access.log")
        m = self.moat("--backend", be.addr, "--workers", "2", "--access-log", path,
                      "--access-log-format", "json")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640 & ~current_umask())
        self.assertEqual(m.stdout(), "")

        done = {}  # target -> request id the backend saw, for every answered request
        errors = []
        stop = threading.Event()

        def client(n):
            # Keep-alive connections, renewed now and then, so both workers keep writing.
            i = 0
            while not stop.is_set() and i < 5000:
                try:
                    s = tls_connect(m.port)
                    f = s.makefile("rb")
                    for _ in range(20):
                        target = "/load/%d/%d" % (n, i)
                        i += 1
                        s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: l\r\n\r\n")
                        status, _, body = read_response(f)
                        if status != 200:
                            errors.append((target, status))
                        done[target] = request_id_of(json.loads(body))[0]
                    s.close()
                except Exception as e:  # noqa: BLE001 (reported below)
                    errors.append(repr(e))
                    return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(done) >= 100, "requests before the rotation")
            os.rename(path, path + ".1")  # what logrotate does first
            before = len(done)
            m.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(path), "the new log file")
            wait_for(lambda: len(done) >= before + 100, "requests after the rotation")
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        self.assertEqual(errors, [])
        self.assertIn("SIGUSR1: access log %s reopened" % path, m.stderr())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640 & ~current_umask())
        self.stop_clean(m)  # every line written

        old = [json.loads(l) for l in open(path + ".1", encoding="utf-8")]
        new = [json.loads(l) for l in open(path, encoding="utf-8")]
        self.assertGreater(len(old), 0)
        self.assertGreater(len(new), 0)
        logged = {}
        for r in old + new:
            self.assertNotIn(r["target"], logged, "logged twice")
            logged[r["target"]] = r["request_id"]
        self.assertEqual(logged, done)  # none lost, none invented, ids as the backend saw
        self.assertEqual(m.stdout(), "")

    def test_sigusr1_with_stdout_target_is_harmless(self):
        be = self.backend()
        m = self.moat("--backend", be.addr)
        m.proc.send_signal(signal.SIGUSR1)
        rc, out, err = curl(m.url("/after"))
        self.assertEqual(rc, 0, err)
        lines = self.log_lines(m)
        self.assertEqual(len(lines), 1, lines)

    def test_file_appended_not_truncated(self):
        be = self.backend()
        path = os.path.join(self.tmpdir(), "a.log")
        with open(path, "w") as f:
            f.write("earlier line\n")
        m = self.moat("--backend", be.addr, "--access-log", path)
        rc, out, err = curl(m.url("/appended"))
        self.assertEqual(rc, 0, err)
        self.stop_clean(m)
        lines = open(path).read().splitlines()
        self.assertEqual(lines[0], "earlier line")
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /appended HTTP/1.1" 200', lines[1])

    def test_unopenable_log_file_stops_the_start(self):
        be = self.backend()
        d = self.tmpdir()
        for path in (os.path.join(d, "missing-dir", "access.log"), d):
            with self.subTest(path=path):
                m = self.moat("--backend", be.addr, "--access-log", path, wait=False)
                rc = m.proc.wait(timeout=30)
                m.stop()
                self.assertEqual(rc, 1, m.stderr())
                self.assertIn("moat: error: access log %s: " % path, m.stderr())
                self.assertNotIn(" started ", m.stderr())  # no port was opened
                m.check_clean(self)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def wait_for(cond, what, timeout=IO_TIMEOUT * 4):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


if __name__ == "__main__":
    unittest.main()
