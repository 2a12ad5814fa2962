"""The TLS key log (debug.tls_key_log): moat's lines for a session are the very secrets the
client derived (Python's ssl, which is OpenSSL, writes its own key log to compare), for TLS 1.3
and 1.2; the file is created 0600 and the start-up warns."""
import os
import socket
import ssl
import stat
import unittest

from harness import Certs, MoatTestCase, read_response


class TestKeyLog(MoatTestCase):
    def test_the_key_log_holds_the_secrets_the_client_derived(self):
        backend = self.backend()
        d = self.tmp_dir()
        server_log, client_log = os.path.join(d, "moat.keys"), os.path.join(d, "client.keys")
        path, m = self.moat_config("pools: {app: {backends: [%s]}}\ndebug: {tls_key_log: %s}\n"
                                   % (backend.addr, server_log))
        self.assertIn("TLS KEY LOG ON", m.stderr())
        self.assertEqual(stat.S_IMODE(os.stat(server_log).st_mode), 0o600)
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = Certs.client_context()
            ctx.maximum_version = version
            ctx.keylog_filename = client_log
            with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertEqual(read_response(s.makefile("rb"))[0], 200)
        m.stop()
        with open(client_log) as f:
            # OpenSSL also logs TLS 1.3's exporter secret, which mbedTLS does not hand out.
            want = {l for l in f.read().splitlines()
                    if l and not l.startswith("#") and not l.startswith("EXPORTER_SECRET")}
        with open(server_log) as f:
            got = set(f.read().splitlines())
        self.assertEqual(got, want)
        labels = {l.split()[0] for l in got}
        self.assertEqual(labels, {"CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                                  "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                                  "SERVER_TRAFFIC_SECRET_0"})


if __name__ == "__main__":
    unittest.main()
