#!/usr/bin/python3
"""bench/many-certs.py: what N certificates on one listener cost moat: the time `moat -t`
takes to load them, and the resident memory a running moat holds for them, against the same
moat with one certificate. Each certificate is its own ECDSA P-256 key and leaf for
site-K.test, signed by one throwaway CA, in a directory (certificate_dirs). Needs Debian's
python3-cryptography (scripts/deps.sh --bench); loopback only.

With --handshakes, also full TLS 1.3 handshakes per moat CPU-second (one worker; clients on
four threads, each handshake a new session for a random site's name) with 1,000 certificates
against one.

Usage: bench/many-certs.py [--count N] [--moat BIN] [--handshakes]   (default 10000, build/moat)
"""
import argparse
import datetime
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import ssl
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def make_certs(out_dir, count):
    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    for k in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = "site-%d.test" % k
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .sign(ca_key, hashes.SHA256()))
        base = os.path.join(out_dir, "site-%05d" % k)
        with open(base + ".crt", "wb") as f:
            f.write(cert.public_bytes(pem))
        with open(base + ".key", "wb") as f:
            f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, plain))
        os.chmod(base + ".key", 0o600)


def config(path, dirs, port, workers=2):
    with open(path, "w") as f:
        f.write("workers: %d\nlisteners:\n  - listen: 127.0.0.1:%d\n    tls:\n"
                "      certificate_dirs: [%s]\npools:\n  app: {backends: [127.0.0.1:1]}\n"
                "logging: {access_log: false}\n" % (workers, port, ", ".join(dirs)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def running_rss(moat, conf_dir, dirs):
    """VmRSS of a moat serving dirs, once it listens and has answered one handshake."""
    port = free_port()
    path = os.path.join(conf_dir, "run.yaml")
    config(path, dirs, port)
    p = subprocess.Popen([moat, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    try:
        for line in p.stderr:
            if " started listen=" in line:
                break
        subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
                        "site-1.test"], input=b"", capture_output=True, timeout=30)
        return rss_kib(p.pid)
    finally:
        p.terminate()
        p.wait(timeout=30)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshake_rate(moat, conf_dir, cert_dir, count, seconds=5.0):
    """Full handshakes per moat CPU-second, SNI for random sites among count."""
    port = free_port()
    path = os.path.join(conf_dir, "hs.yaml")
    config(path, [cert_dir], port, workers=1)
    p = subprocess.Popen(["taskset", "-c", "0", moat, "-c", path], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if " started listen=" in line:
                break
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        done = [0]
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client():
            n = 0
            while time.monotonic() < stop:
                name = "site-%d.test" % random.randrange(count)
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with ctx.wrap_socket(raw, server_hostname=name):
                        n += 1
            with lock:
                done[0] += n
        start = cpu_s(p.pid)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done[0] / max(cpu_s(p.pid) - start, 0.01)
    finally:
        p.terminate()
        p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--moat", default="build/moat")
    ap.add_argument("--handshakes", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="moat-many-certs-")
    try:
        many, one = os.path.join(work, "many"), os.path.join(work, "one")
        os.makedirs(many)
        os.makedirs(one)
        t0 = time.monotonic()
        make_certs(many, a.count)
        make_certs(one, 1)
        print("made %d certificates in %.1f s" % (a.count, time.monotonic() - t0))
        path = os.path.join(work, "check.yaml")
        config(path, [many], 0)
        t0 = time.monotonic()
        p = subprocess.run([a.moat, "-t", "-c", path], capture_output=True, text=True)
        load_s = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit("moat -t failed: " + p.stderr[-2000:])
        rss_many = running_rss(a.moat, work, [many])
        rss_one = running_rss(a.moat, work, [one])
        per = (rss_many - rss_one) / a.count
        print("moat -t loads %d certificates in %.2f s (%.0f us each)"
              % (a.count, load_s, load_s * 1e6 / a.count))
        print("running moat, 2 workers: RSS %d KiB with %d certificates, %d KiB with 1: "
              "%.2f KiB per certificate" % (rss_many, a.count, rss_one, per))
        if a.handshakes:
            thousand = os.path.join(work, "thousand")
            os.makedirs(thousand)
            make_certs(thousand, 1000)
            with_many = handshake_rate(a.moat, work, thousand, 1000)
            with_one = handshake_rate(a.moat, work, one, 1)
            print("full TLS 1.3 handshakes per moat CPU-second, one worker: %.0f with 1,000 "
                  "certificates (SNI), %.0f with one: %.2fx" % (with_many, with_one,
                                                               with_many / with_one))
    finally:
        shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
