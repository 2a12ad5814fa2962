"""1 GiB down and 1 GiB up through moat, checksummed, while moat's memory stays bounded: bodies
stream with backpressure, never held whole."""
import hashlib
import json
import threading
import time

from harness import SANITIZED, MoatTestCase, pattern, read_response, tls_connect

GIB = 1 << 30
BLOCK = pattern(65536)  # pattern(n) repeats this block, so a GiB's digest is built from it
# moat's RSS may grow by at most this much while the transfers run (its buffers are bounded by
# the 256 KiB high-water marks each way, per connection).
RSS_GROWTH_BOUND_KIB = 4 * 1024


def pattern_digest(n):
    h = hashlib.sha256()
    for _ in range(n // len(BLOCK)):
        h.update(BLOCK)
    return h.hexdigest()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TestBig(MoatTestCase):
    def test_one_gib_each_way_in_bounded_memory(self):
        be = self.backend()
        m = self.moat("--backend", be.addr, "--workers", "1")
        # Warm up (TLS contexts, pools), then take the baseline.
        s = tls_connect(m.port)
        s.sendall(b"GET /bytes/1000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_response(s.makefile("rb"))
        s.close()
        baseline = rss_kib(m.proc.pid)
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.wait(0.1):
                peak[0] = max(peak[0], rss_kib(m.proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            # Down: 1 GiB from the backend, hashed as it arrives.
            s = tls_connect(m.port)
            s.settimeout(300)
            s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % GIB)
            f = s.makefile("rb")
            line = f.readline()
            self.assertIn(b" 200 ", line)
            while f.readline() not in (b"\r\n", b""):
                pass
            h, left = hashlib.sha256(), GIB
            while left:
                d = f.read(min(left, 1 << 20))
                self.assertTrue(d, "download cut short")
                h.update(d)
                left -= len(d)
            self.assertEqual(h.hexdigest(), pattern_digest(GIB))
            # Up: 1 GiB to the backend on the same connection, hashed by the backend.
            s.sendall(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % GIB)
            for _ in range(GIB // len(BLOCK)):
                s.sendall(BLOCK)
            st, _, body = read_response(f)
            self.assertEqual(st, 200)
            got = json.loads(body)
            self.assertEqual((got["length"], got["sha256"]), (GIB, pattern_digest(GIB)))
            f.close()
            s.close()
        finally:
            done.set()
            sampler.join()
        growth = peak[0] - baseline
        print("\nmoat RSS: %d KiB before, %d KiB peak during 1 GiB down + 1 GiB up (+%d KiB)" %
              (baseline, peak[0], growth))
        if not SANITIZED:  # ASan's allocator keeps freed memory in quarantine
            self.assertLess(growth, RSS_GROWTH_BOUND_KIB)
        self.stop_clean(m)
