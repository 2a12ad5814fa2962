"""Many certificates on one listener, chosen by SNI, as clients meet them: openssl s_client and
curl against certificates of a test CA made here with the openssl command (exact names,
a wildcard, an ECDSA and an RSA pair for one name, a default), strict SNI, directories of
pairs, 421 for a request whose Host is another certificate's site."""
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from harness import MoatTestCase

OPENSSL = shutil.which("openssl")
MOAT = os.environ.get("MOAT_BIN", "build/moat")


class CA:
    """A throwaway CA and leaves signed by it, in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="moat-sni-")
        self.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=moat test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign")
        self.pem = self.path("ca.pem")

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, *args):
        subprocess.run([OPENSSL] + list(args), cwd=self.dir, check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self, name):
        """A client certificate CN=name signed by this CA: (cert path, key path)."""
        self.run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        with open(self.path(name + ".ext"), "w") as f:
            f.write("keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
        self.run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext")
        return self.path(name + ".crt"), self.path(name + ".key")

    def leaf(self, name, sans, rsa=False, out_dir=None, combined=False):
        """A leaf certificate CN=name for the DNS names sans: (cert path, key path). combined:
        one NAME.pem holding the chain and the key."""
        key = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt",
                                                    "ec_paramgen_curve:P-256"]
        self.run("req", *key, "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + name)
        with open(self.path(name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n" % ",".join("DNS:" + s for s in sans))
        self.run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext")
        cert, key_path = self.path(name + ".crt"), self.path(name + ".key")
        if out_dir is not None:
            if combined:
                with open(os.path.join(out_dir, name + ".pem"), "w") as f:
                    f.write(open(cert).read() + open(key_path).read())
                return os.path.join(out_dir, name + ".pem"), os.path.join(out_dir, name + ".pem")
            shutil.copy(cert, out_dir)
            shutil.copy(key_path, out_dir)
            os.chmod(os.path.join(out_dir, name + ".key"), 0o600)
            return os.path.join(out_dir, name + ".crt"), os.path.join(out_dir, name + ".key")
        os.chmod(key_path, 0o600)
        return cert, key_path

    def cleanup(self):
        shutil.rmtree(self.dir, True)


def curl(*args):
    """curl's exit status, its stdout (text) and its stderr."""
    p = subprocess.run(["curl", "--max-time", "20"] + list(args), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def served(port, name=None, extra=()):
    """The CN of the certificate moat shows a client sending SNI name (None: no SNI), or the
    alert that ended the handshake ("alert 112": unrecognized_name)."""
    args = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    args += ["-servername", name] if name is not None else ["-noservername"]
    p = subprocess.run(args + list(extra), input=b"", capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    alert = re.search(r"alert number (\d+)", out)
    if "BEGIN CERTIFICATE" not in out:
        return "alert %s" % (alert.group(1) if alert else "none")
    cn = re.search(r"^subject=.*?CN\s*=\s*([^,\n]+)", out, re.M)
    return cn.group(1).strip() if cn else "?"


@unittest.skipIf(OPENSSL is None, "needs the openssl command")
class TestSNI(MoatTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca = CA()
        cls.default = cls.ca.leaf("default", ["default.test"])
        cls.a_ec = cls.ca.leaf("a-ec", ["a.test"])
        cls.a_rsa = cls.ca.leaf("a-rsa", ["a.test"], rsa=True)
        cls.b_wild = cls.ca.leaf("b-wild", ["*.b.test", "b-apex.test"])

    @classmethod
    def tearDownClass(cls):
        cls.ca.cleanup()

    def start(self, extra_tls="", pairs=None):
        pairs = pairs or [self.default, self.a_ec, self.a_rsa, self.b_wild]
        backend = self.backend()
        certs = "".join("        - {cert: %s, key: %s}\n" % p for p in pairs)
        path = os.path.join(self.tmp_dir(), "moat.yaml")
        with open(path, "w") as f:
            f.write("listeners:\n  - listen: 127.0.0.1:0\n    tls:\n%s      certificates:\n%s"
                    "pools:\n  app: {backends: [%s]}\n" % (extra_tls, certs, backend.addr))
        m = self.moat("-c", path, listen=(), certs=None, state_dir="")
        return m, backend

    def test_each_name_gets_its_certificate(self):
        m, _ = self.start()
        cases = {"a.test": "a-ec", "A.TEST.": "a-ec",       # case and a trailing dot
                 "x.b.test": "b-wild", "b-apex.test": "b-wild",
                 "y.x.b.test": "default",                    # a wildcard covers one label
                 "b.test": "default", "unknown.test": "default", None: "default"}
        for name, want in cases.items():
            with self.subTest(sni=name):
                self.assertEqual(served(m.port, name), want)
        # The same name, an RSA-only client: the RSA pair (TLS 1.3 and 1.2).
        self.assertEqual(served(m.port, "a.test", ["-sigalgs", "rsa_pss_rsae_sha256"]), "a-rsa")
        self.assertEqual(served(m.port, "a.test", ["-tls1_2", "-cipher",
                                                   "ECDHE-RSA-AES128-GCM-SHA256"]), "a-rsa")
        # A real client that checks the chain and the name.
        rc, code, err = curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                             self.ca.pem, "--resolve", "x.b.test:%d:127.0.0.1" % m.port,
                             "https://x.b.test:%d/" % m.port)
        self.assertEqual((rc, code), (0, "200"), err)
        self.stop_clean(m)

    def test_a_ticket_resumes_only_its_own_site(self):
        """A session issued for a.test, offered with another name's SNI, gets a full handshake
        (and the other certificate); offered for a.test again, it resumes."""
        m, _ = self.start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca.pem)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # OpenSSL offers a 1.2 ticket to any name

        def connect(name, session=None):
            raw = socket.create_connection(("127.0.0.1", m.port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname=name, session=session)
            s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % name.encode())
            while s.recv(65536):
                pass
            reused, got = s.session_reused, s.session
            cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            try:
                s.unwrap()
            except (OSError, ssl.SSLError):
                pass
            s.close()
            return reused, got, cn
        _, session, cn = connect("a.test")
        self.assertEqual(cn, "a-ec")
        self.assertEqual(connect("a.test", session)[::2], (True, "a-ec"))
        self.assertEqual(connect("x.b.test", session)[::2], (False, "b-wild"))
        self.stop_clean(m)

    def test_a_host_of_another_certificate_gets_421(self):
        m, backend = self.start()
        base = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", self.ca.pem,
                "--resolve", "a.test:%d:127.0.0.1" % m.port]
        url = "https://a.test:%d/x" % m.port
        for host, want in (("a.test", "200"), ("a.test:%d" % m.port, "200"),
                           ("x.b.test", "421"), ("default.test", "421"),
                           ("elsewhere.test", "200")):  # no certificate's name: routes decide
            with self.subTest(host=host):
                rc, code, err = curl(*base, "-H", "Host: " + host, url)
                self.assertEqual((rc, code), (0, want), err)
        self.assertEqual(len(backend.seen), 3)  # the 421s never reached it
        self.assertIn("request for x.b.test on a connection whose certificate is another "
                      "site's: 421", m.stderr())
        self.stop_clean(m)

    def test_strict_sni_refuses_unknown_and_missing_names(self):
        m, _ = self.start("      strict_sni: true\n")
        self.assertEqual(served(m.port, "a.test"), "a-ec")
        for name in ("unknown.test", None):
            for version in ("-tls1_3", "-tls1_2"):
                with self.subTest(sni=name, version=version):
                    self.assertEqual(served(m.port, name, [version]), "alert 112")
        self.stop_clean(m)

    def test_directories_of_pairs(self):
        d = self.tmp_dir()
        self.ca.leaf("dir-crt", ["crt.test"], out_dir=d)             # NAME.crt + NAME.key
        self.ca.leaf("dir-pem", ["pem.test"], out_dir=d, combined=True)  # NAME.pem with its key
        shutil.copy(self.ca.pem, os.path.join(d, "ca-bundle.pem"))   # no key: not a pair
        os.makedirs(os.path.join(d, "..data"))                       # hidden: skipped
        m, _ = self.start("      certificate_dirs: [%s]\n" % d, pairs=[self.default])
        self.assertEqual(served(m.port, "crt.test"), "dir-crt")
        self.assertEqual(served(m.port, "pem.test"), "dir-pem")
        self.assertEqual(served(m.port, "none.test"), "default")
        self.stop_clean(m)

    def test_client_certificates(self):
        """required: a good certificate reaches the backend in Client-Cert (RFC 9440); none, or
        one of another CA, is refused at the handshake. optional: no certificate is served
        (and a forged Client-Cert field never passes), a bad one is refused."""
        import base64
        other = CA()
        self.addCleanup(other.cleanup)
        good = self.ca.client("alice")
        stranger = other.client("mallory")
        der = base64.b64encode(ssl.PEM_cert_to_DER_cert(open(good[0]).read())).decode()
        for mode in ("required", "optional"):
            with self.subTest(mode=mode):
                m, backend = self.start("      client_auth: {mode: %s, ca: %s}\n"
                                        % (mode, self.ca.pem), pairs=[self.a_ec])
                base = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", self.ca.pem,
                        "--resolve", "a.test:%d:127.0.0.1" % m.port,
                        "-H", "Client-Cert: :Zm9yZ2Vk:"]
                url = "https://a.test:%d/who" % m.port
                rc, code, err = curl(*base, "--cert", good[0], "--key", good[1], url)
                self.assertEqual((rc, code), (0, "200"), err)
                fields = dict((k.lower(), v) for k, v in backend.seen[-1]["headers"])
                self.assertEqual(fields["client-cert"], ":%s:" % der)
                rc, code, err = curl(*base, "--cert", stranger[0], "--key", stranger[1], url)
                self.assertNotEqual(rc, 0, "a certificate of another CA was accepted")
                rc, code, err = curl(*base, url)
                if mode == "required":
                    self.assertNotEqual(rc, 0, "no certificate was accepted")
                else:
                    self.assertEqual((rc, code), (0, "200"), err)
                    fields = dict((k.lower(), v) for k, v in backend.seen[-1]["headers"])
                    self.assertNotIn("client-cert", fields)  # the forged one was dropped
                self.assertEqual(len(backend.seen), 1 if mode == "required" else 2)
                self.assertIn("client certificate", m.stderr())  # the reason, logged
                self.stop_clean(m)

    def test_mistakes_are_errors_naming_the_file(self):
        other_a = self.ca.leaf("a-ec-2", ["a.test"])
        d = self.tmp_dir()
        open(os.path.join(d, "lonely.crt"), "w").write(open(self.a_ec[0]).read())
        for pairs, dirs, needle in (
                ([self.a_ec, other_a], [], "a-ec-2.crt: a second certificate of the same key "
                                           "type for the same names"),
                ([self.default], [d], "lonely.crt: no lonely.key beside it"),
                ([self.default], [os.path.join(d, "missing")], "cannot open it")):
            with self.subTest(needle=needle):
                path = os.path.join(self.tmp_dir(), "moat.yaml")
                with open(path, "w") as f:
                    f.write("listeners:\n  - listen: 127.0.0.1:0\n    tls:\n"
                            "      certificate_dirs: [%s]\n      certificates:\n%s"
                            "pools:\n  app: {backends: [127.0.0.1:1]}\n"
                            % (", ".join(dirs), "".join("        - {cert: %s, key: %s}\n" % p
                                                        for p in pairs)))
                p = subprocess.run([MOAT, "-t", "-c", path],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(needle, p.stderr)


if __name__ == "__main__":
    unittest.main()
