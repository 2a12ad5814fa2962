"""Load balancing: weights (smooth weighted round robin), weight 0, a pool with nothing to try."""
import http.client
import threading
import unittest

from harness import Certs, MoatTestCase, curl


def get_many(port, n, conns):
    """n GETs spread over `conns` kept-alive client connections, one thread each; returns the
    statuses seen (a failure raises in the caller)."""
    statuses, errors = [], []
    lock = threading.Lock()

    def run(count):
        conn = http.client.HTTPSConnection("localhost", port, context=Certs.client_context(),
                                           timeout=10)
        try:
            for i in range(count):
                conn.request("GET", "/w%d" % i)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
        except Exception as e:  # reported by the caller
            with lock:
                errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise AssertionError("requests failed: %s" % errors[:5])
    return statuses


class TestWeights(MoatTestCase):
    def test_weighted_split_within_5_percent_and_weight_0_gets_nothing(self):
        a, b, c = self.backend(), self.backend(), self.backend()
        path, m = self.moat_config("""workers: 2
pools:
  app:
    backends:
      - {address: %s, weight: 3}
      - %s
      - {address: %s, weight: 0}
logging: {access_log: false}
""" % (a.addr, b.addr, c.addr))
        statuses = get_many(m.port, 4000, 8)
        self.assertEqual(statuses, [200] * 4000)
        # Smooth weighted round robin is exact per worker (a a b a ...): the split is 3:1 to
        # within a request per worker and connection start, far inside 5 % (200 of 4000).
        self.assertLessEqual(abs(len(a.seen) - 3000), 200, (len(a.seen), len(b.seen)))
        self.assertLessEqual(abs(len(b.seen) - 1000), 200, (len(a.seen), len(b.seen)))
        self.assertEqual(len(a.seen) + len(b.seen), 4000)
        self.assertEqual(c.seen, [], "a backend of weight 0 got new requests")
        self.stop_clean(m)

    def test_weights_interleave_per_worker(self):
        """With one worker the order itself is nginx's: a a b a, repeated."""
        a, b = self.backend(), self.backend()
        m = self.moat("--backend", a.addr + ",weight=3", "--backend", b.addr, "--workers", "1")
        order = []
        for i in range(8):
            rc, out, err = curl(m.url("/o%d" % i))
            self.assertEqual(rc, 0, err)
            order.append("a" if any(r["path"] == "/o%d" % i for r in a.seen) else "b")
        self.assertEqual("".join(order), "aabaaaba")
        self.stop_clean(m)

    def test_every_weight_0_answers_503_with_retry_after(self):
        a = self.backend()
        m = self.moat("--backend", a.addr + ",weight=0")
        rc, out, err = curl("-i", m.url("/none"))
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, rb"^HTTP/1.1 503 ")
        self.assertIn(b"Retry-After: 1", out)
        self.assertEqual(a.seen, [])
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
