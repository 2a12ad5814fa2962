"""The configuration file: every example passes check mode, a broken file fails it with
FILE:LINE:COLUMN errors, and moat started with -c serves HTTPS through to a backend."""
import glob
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import MOAT_BIN, REPO, Certs, MoatTestCase, curl

EXAMPLES = sorted(glob.glob(os.path.join(REPO, "config", "examples", "*.yaml")))


class TestConfigFile(MoatTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="moat-it-config-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # The examples name certificates as ${MOAT_CERT_DIR}/ec.pem and so on (the harness's
        # test CA issued them); listeners without certificates use a development certificate
        # kept in this test's own state folder.
        self.env = dict(os.environ, MOAT_CERT_DIR=Certs.dir(),
                        MOAT_STATE_DIR=os.path.join(self.tmp, "state"))

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path):
        return subprocess.run([MOAT_BIN, "-t", "-c", path], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, env=self.env)

    def test_examples_pass_check_mode(self):
        self.assertGreaterEqual(len(EXAMPLES), 2, "config/examples/ holds the examples")
        for path in EXAMPLES:
            with self.subTest(example=os.path.basename(path)):
                p = self.check(path)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout, "configuration OK\n")

    def test_examples_pass_check_mode_as_shipped(self):
        # As a new user runs them: from the checkout's root, with none of moat's variables set
        # and a home of their own (minimal.yaml's development certificate goes there).
        env = {"PATH": os.environ["PATH"], "HOME": os.path.join(self.tmp, "home")}
        for path in EXAMPLES:
            rel = os.path.relpath(path, REPO)
            with self.subTest(example=rel):
                p = subprocess.run([MOAT_BIN, "-t", "-c", rel], capture_output=True, text=True,
                                   timeout=60, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout, "configuration OK\n")
        # The variable, when set, wins over the default the example gives it.
        env["MOAT_CERT_DIR"] = os.path.join(self.tmp, "no-such-dir")
        p = subprocess.run([MOAT_BIN, "-t", "-c", "config/examples/full.yaml"],
                           capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(env["MOAT_CERT_DIR"] + "/ec.pem", p.stderr)

    def test_broken_file_lists_every_error(self):
        path = self.write("broken.yaml", "pools:\n"
                                         "  web: {backends: [127.0.0.1:8080]}\n"
                                         "workers: 0\n"
                                         "timeouts: {idle: forever}\n"
                                         "routes: [{pool: nope}]\n")
        p = self.check(path)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("configuration OK", p.stdout)
        self.assertEqual(p.stderr.splitlines(), [
            path + ":3:10: workers: expected a number from 1 to 256, got '0'",
            path + ":4:18: timeouts.idle: expected a duration from 1ms to 24h (e.g. 500ms, "
                   "10s, 5m), got 'forever'",
            path + ":5:17: routes[0].pool: no pool named 'nope' (pools: web)",
        ])

    def test_syntax_error_and_missing_variable(self):
        path = self.write("syntax.yaml", "pools: {web: {backends: [127.0.0.1:8080]}\n")
        p = self.check(path)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, "^" + path + r":2:1: syntax error: ")
        path = self.write("env.yaml", "pools: {web: {backends: [127.0.0.1:8080]}}\n"
                                      "user: ${MOAT_IT_SURELY_UNSET}\n")
        self.env.pop("MOAT_IT_SURELY_UNSET", None)
        p = self.check(path)
        self.assertEqual(p.returncode, 1)
        self.assertIn(path + ":2:7: user: environment variable MOAT_IT_SURELY_UNSET is not set",
                      p.stderr)

    def test_missing_certificate_fails_check(self):
        path = self.write("nocert.yaml", "listeners:\n"
                                         "  - listen: 127.0.0.1:0\n"
                                         "    tls: {certificates: [{cert: /nonexistent/a.pem,\n"
                                         "                          key: /nonexistent/a.key}]}\n"
                                         "pools: {web: {backends: [127.0.0.1:8080]}}\n")
        p = self.check(path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/a.pem", p.stderr)

    def test_serves_https_with_a_config_file(self):
        backend = self.backend()
        path = self.write("serve.yaml", "listeners:\n"
                                        "  - listen: 127.0.0.1:0\n"
                                        "    tls:\n"
                                        "      certificates:\n"
                                        "        - cert: ${MOAT_CERT_DIR}/ec.pem\n"
                                        "          key: ${MOAT_CERT_DIR}/ec.key\n"
                                        "pools:\n"
                                        "  app:\n"
                                        "    backends: [%s]\n"
                                        "workers: 1\n"
                                        "logging: {level: debug}\n" % backend.addr)
        m = self.moat("-c", path, listen=(), certs=None, state_dir="", env=self.env)
        rc, out, err = curl(m.url("/through/config"))
        self.assertEqual(rc, 0, err + m.stderr()[-3000:])
        self.assertIn(b'"path": "/through/config"', out)
        self.assertEqual([r["path"] for r in backend.seen], ["/through/config"])
        self.stop_clean(m)


if __name__ == "__main__":
    unittest.main()
