"""deploy/: the Compose file and the Kubernetes manifests. No container engine runs here, so this
checks what can be checked: every file parses as YAML, the moat configuration inside passes
`moat -t`, and every flag, port and path they use is one moat has."""
import json
import os
import re
import subprocess
import tempfile
import unittest

from dnsd import DNSServer
from harness import Certs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "deploy")
MOAT = os.environ.get("MOAT_BIN", os.path.join(ROOT, "build", "moat"))
DEBIAN_PYTHON = "/usr/bin/python3"  # python3-yaml imports only there


def load_yaml(path):
    """Every document of a YAML file, parsed by Debian's PyYAML."""
    out = subprocess.run(
        [DEBIAN_PYTHON, "-c",
         "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
         path], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("%s does not parse: %s" % (path, out.stderr))
    return json.loads(out.stdout)


def check_config(text):
    """moat -t on a configuration text, with the test certificates standing in for the
    mounted ones. The deployment's backend names exist only inside its network: a DNS server
    on loopback that knows no name answers for them, so no query leaves the machine.
    (exit code, output)."""
    if re.search(r"^resolver:", text, re.M):
        raise AssertionError("the deployment sets resolver: the test cannot point it here")
    dns = DNSServer()
    text += '\nresolver: {servers: ["%s"]}\n' % dns.addr
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        env = dict(os.environ, MOAT_CERT=Certs.path("ec.pem"), MOAT_KEY=Certs.path("ec.key"))
        p = subprocess.run([MOAT, "-t", "-c", f.name], capture_output=True, text=True,
                           timeout=60, env=env)
        return p.returncode, p.stderr + p.stdout
    finally:
        os.unlink(f.name)
        dns.stop()


def help_flags():
    out = subprocess.run([MOAT, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"--[a-z][a-z-]+", out.stdout + out.stderr))


class TestDeploy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if subprocess.run([DEBIAN_PYTHON, "-c", "import yaml"]).returncode != 0:
            raise unittest.SkipTest("python3-yaml is missing (scripts/deps.sh installs it)")

    def test_compose(self):
        compose = load_yaml(os.path.join(DEPLOY, "compose.yaml"))[0]
        moat = compose["services"]["moat"]
        app = compose["services"]["app"]
        self.assertEqual(app["deploy"]["replicas"], 3)
        args = moat["command"]
        flags = help_flags()
        for a in args:
            if a.startswith("--"):
                self.assertIn(a, flags)
        conf_path = args[args.index("--config") + 1]
        mounts = dict(v.split(":")[1::-1] for v in moat["volumes"])  # container -> host
        self.assertIn(conf_path, mounts)
        host_conf = os.path.join(DEPLOY, mounts[conf_path])
        self.assertTrue(os.path.exists(host_conf), host_conf)
        self.assertIn("/certs", mounts)
        rc, out = check_config(open(host_conf).read())
        self.assertEqual(rc, 0, out)
        self.assertIn("does not resolve", out)  # a warning, as an absent service is
        conf = load_yaml(host_conf)[0]
        listen_port = conf["listeners"][0]["listen"].rsplit(":", 1)[1]
        self.assertIn("8443:%s" % listen_port, moat["ports"])
        self.assertTrue(any(b.startswith("app:") for b in conf["pools"]["app"]["backends"]))
        dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
        self.assertIn("EXPOSE %s" % listen_port, dockerfile)

    def test_kubernetes(self):
        docs = []
        for name in sorted(os.listdir(os.path.join(DEPLOY, "kubernetes"))):
            docs += load_yaml(os.path.join(DEPLOY, "kubernetes", name))
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for want in [("Deployment", "moat"), ("Service", "moat"), ("Secret", "moat-tls"),
                     ("ConfigMap", "moat-config"), ("Deployment", "app"), ("Service", "app")]:
            self.assertIn(want, kinds)
        by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        self.assertEqual(by[("Service", "app")]["spec"]["clusterIP"], "None")  # headless
        conf_text = by[("ConfigMap", "moat-config")]["data"]["moat.yaml"]
        rc, out = check_config(conf_text.replace("/certs/tls.crt", '"${MOAT_CERT}"')
                               .replace("/certs/tls.key", '"${MOAT_KEY}"'))
        self.assertEqual(rc, 0, out)
        conf = load_yaml_text(conf_text)
        pod = by[("Deployment", "moat")]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        flags = help_flags()
        for a in c["args"]:
            if a.startswith("--"):
                self.assertIn(a, flags)
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        self.assertTrue(c["args"][c["args"].index("--config") + 1].startswith(mounts["config"]))
        cert = conf["listeners"][0]["tls"]["certificates"][0]["cert"]
        self.assertTrue(cert.startswith(mounts["tls"]), cert)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(str(ports["https"]), conf["listeners"][0]["listen"].rsplit(":", 1)[1])
        self.assertEqual(str(ports["admin"]), conf["admin"]["listen"].rsplit(":", 1)[1])
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["port"], ports["admin"])
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        # The pod runs as the image's own user, so the mounted key stays readable.
        uid = re.search(r"useradd --uid (\d+)", open(os.path.join(ROOT, "Dockerfile")).read())
        self.assertEqual(pod["securityContext"]["runAsUser"], int(uid.group(1)))
        svc = by[("Service", "moat")]["spec"]["ports"][0]
        self.assertEqual(svc["targetPort"], ports["https"])


def load_yaml_text(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        return load_yaml(f.name)[0]
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
