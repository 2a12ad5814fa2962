"""The Dockerfile, built and run for real with the daemonless container tools (host network):
moat in the image answers HTTPS in front of a backend on this host."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import REPO, SANITIZED, Certs, MoatTestCase, curl, free_port

TOOLS = os.environ.get("MOAT_CONTAINER_TOOLS",
                       os.path.join(os.path.dirname(REPO), "shared", "tools"))
BUILD = os.path.join(TOOLS, "container-build")
RUN = os.path.join(TOOLS, "container-run")
TAG = "moat:integration-test"


@unittest.skipIf(SANITIZED, "the image holds a release build: tested in the normal run only")
@unittest.skipUnless(os.geteuid() == 0, "the container tools need root (rootful buildah/podman)")
@unittest.skipUnless(os.access(BUILD, os.X_OK) and os.access(RUN, os.X_OK),
                     "container-build/container-run not found in " + TOOLS)
class TestContainer(MoatTestCase):
    def podman(self, *args, timeout=120):
        return subprocess.run([RUN, "--podman"] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def test_image_serves_https_as_non_root(self):
        p = subprocess.run([BUILD, "-q", "-t", TAG, REPO], capture_output=True, text=True,
                           timeout=1500)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])

        # Certificates as mounted files, readable by the image's unprivileged user.
        certs = tempfile.mkdtemp(prefix="moat-it-mount-")
        self.addCleanup(shutil.rmtree, certs, True)
        os.chmod(certs, 0o755)
        for name in ("ec.pem", "ec.key"):
            shutil.copy(Certs.path(name), os.path.join(certs, name))
            os.chmod(os.path.join(certs, name), 0o644)

        be = self.backend()
        port = free_port()
        name = "moat-it-%d" % os.getpid()
        p = subprocess.run([RUN, "-d", "--name", name, "-v", certs + ":/certs:ro", TAG,
                            "--listen", "127.0.0.1:%d" % port, "--cert", "/certs/ec.pem",
                            "--key", "/certs/ec.key", "--backend", be.addr],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.addCleanup(self.podman, "rm", "-f", name)

        deadline = time.monotonic() + 60
        rc, out, err = 1, b"", ""
        while time.monotonic() < deadline:
            rc, out, err = curl("--max-time", "5", "https://localhost:%d/from-container" % port)
            if rc == 0:
                break
            time.sleep(0.5)
        logs = self.podman("logs", name).stdout + self.podman("logs", name).stderr
        self.assertEqual(rc, 0, err + "\n" + logs)
        self.assertIn(b'"path": "/from-container"', out)
        seen = {k.lower(): v for k, v in be.seen[-1]["headers"]}
        self.assertEqual(seen["x-forwarded-proto"], "https")

        uid = self.podman("exec", name, "id", "-u").stdout.strip()
        self.assertNotEqual(uid, "0")
        self.assertTrue(uid.isdigit(), uid)

        # docker stop sends SIGTERM: moat drains and exits 0.
        self.assertEqual(self.podman("stop", name).returncode, 0)
        code = self.podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        self.assertEqual(code, "0")
        logs = self.podman("logs", name)
        self.assertIn("started listen=127.0.0.1:%d" % port, logs.stdout + logs.stderr)


if __name__ == "__main__":
    unittest.main()
