"""Routing requests to named pools by host and path prefix (configuration file)."""
import json
import unittest

from harness import MoatTestCase, curl


class TestRoutes(MoatTestCase):
    def test_host_and_path_pick_the_pool(self):
        web1, web2, api, admin = (self.backend() for _ in range(4))
        path, m = self.moat_config("""
pools:
  web:
    backends: [%s, %s]
  api:
    backends: [%s]
  admin:
    backends: [%s]
routes:
  - host: api.example.com
    pool: api
  - host: "*.example.org"
    path: /admin/
    pool: admin
  - path: /v2/
    pool: api
default_pool: web
""" % (web1.addr, web2.addr, api.addr, admin.addr))

        def get(host, target):
            """Which backend port answered; -k: the test certificate names only localhost."""
            rc, out, err = curl("--resolve", "%s:%d:127.0.0.1" % (host, m.port),
                                "-k", "https://%s:%d%s" % (host, m.port, target))
            self.assertEqual(rc, 0, err)
            return json.loads(out)["port"]

        self.assertEqual(get("api.example.com", "/x"), api.port)
        self.assertEqual(get("API.Example.COM", "/y"), api.port)  # hosts match in any case
        self.assertEqual(get("a.example.org", "/admin/users"), admin.port)
        self.assertEqual(get("b.c.example.org", "/admin/"), admin.port)
        self.assertIn(get("example.org", "/admin/"), (web1.port, web2.port))  # no subdomain
        self.assertIn(get("a.example.org", "/adminx"), (web1.port, web2.port))
        self.assertEqual(get("localhost", "/v2/items"), api.port)
        # The default pool keeps its round-robin over two backends.
        ports = {get("localhost", "/page%d" % i) for i in range(4)}
        self.assertEqual(ports, {web1.port, web2.port})
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
