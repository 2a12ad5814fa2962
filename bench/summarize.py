#!/usr/bin/env python3
"""bench/summarize.py: the table bench/run.sh prints, from the files it left in its scratch dir.

Usage: summarize.py WORKDIR
Reads meta.tsv, samples.tsv (one line per load sample), idle.tsv (RSS around idle connections),
heap.tsv (moat's malloc heap around the same, when moat ran), ceiling.txt and ceiling-stock.txt
(bench/tls-ceiling's `name value unit` lines on the project's engine and on Debian's
libmbedtls). Each figure is the median over rounds; "per CPU-s" divides the work done by the
CPU-seconds the proxy process used meanwhile.
"""
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

TESTS = [
    # test, label, unit of the raw rate, unit per CPU-second
    ("keepalive", "keep-alive 100 B responses", "req/s", "req/CPU-s"),
    ("keepalive_lb", "keep-alive, 4 weighted backends", "req/s", "req/CPU-s"),
    ("handshakes", "full TLS handshakes, ECDSA P-256", "conn/s", "conn/CPU-s"),
    ("handshakes_rsa", "full TLS handshakes, RSA-2048", "conn/s", "conn/CPU-s"),
    ("resumed", "resumed TLS 1.3 handshakes (ticket)", "conn/s", "conn/CPU-s"),
    ("resumed12", "resumed TLS 1.2 handshakes (ticket)", "conn/s", "conn/CPU-s"),
    ("download", "1 MiB responses", "MiB/s", "MiB/CPU-s"),
    ("upload", "1 MiB uploads", "MiB/s", "MiB/CPU-s"),
]
# The TLS engine issue's targets, per proxy CPU-second, against nginx measured in the same run.
TARGET_HANDSHAKES = 1.0  # ECDSA and RSA
TARGET_BULK = 1.0  # 1 MiB responses and uploads
TARGET_KEEPALIVE = 1.2
TARGET_IDLE_RSS = 1.5  # at most this many times nginx's RSS per idle TLS connection
# The load-balancing issue's: with 4 weighted, checked backends, at least 1.2x nginx, and
# within 5 % of moat with one backend.
TARGET_LB = 1.2
TARGET_LB_VS_ONE = 0.95


def fmt(value, digits=None):
    if value is None:
        return "-"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1
    return f"{value:,.{digits}f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def main():
    work = Path(sys.argv[1])
    meta = defaultdict(list)
    for line in (work / "meta.tsv").read_text().splitlines():
        key, _, rest = line.partition("\t")
        meta[key].append(rest)
    negotiated = dict(x.split("\t", 1) for x in meta["negotiated"])
    proxies = list(negotiated)
    died = set(meta["died"])

    samples = defaultdict(list)
    errors = []
    with open(work / "samples.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            units, wall, cpu = float(row["units"]), float(row["wall_s"]), float(row["cpu_s"])
            samples[(row["proxy"], row["test"])].append(
                {
                    "rate": units / wall if wall > 0 else None,
                    "per_cpu": units / cpu if cpu > 0 else None,
                    "busy": cpu / wall if wall > 0 else None,
                    "client_busy": float(row["client_busy"]),
                }
            )
            if row["errors"]:
                errors.append(f"round {row['round']} {row['proxy']} {row['test']}: {row['errors']}")

    def median(proxy, test, key):
        vals = [s[key] for s in samples.get((proxy, test), []) if s[key] is not None]
        return statistics.median(vals) if vals else None

    idle = {}
    for line in (work / "idle.tsv").read_text().splitlines():
        p, n, r0, r1, r2, err = (line.split("\t") + [""] * 6)[:6]
        per = lambda r: (float(r) - float(r0)) / int(n) if r and r0 else None  # noqa: E731
        idle[p] = (per(r1), per(r2), err)
        if err:
            errors.append(f"idle {p}: {err.replace('_', ' ')}")

    transfer = {}  # RSS per connection in full transfer
    transfer_file = work / "transfer.tsv"
    for line in (transfer_file.read_text().splitlines() if transfer_file.exists() else []):
        p, n, r0, peak = (line.split("\t") + [""] * 4)[:4]
        if r0 and peak:
            transfer[p] = (float(peak) - float(r0)) / int(n)

    heap = {}  # moat's malloc heap per idle connection, through bench/heap-probe.so
    heap_file = work / "heap.tsv"
    for line in (heap_file.read_text().splitlines() if heap_file.exists() else []):
        p, n, h0, h1, h2, err = (line.split("\t") + [""] * 6)[:6]
        per = lambda h: (float(h) - float(h0)) / int(n) / 1024 if h and h0 else None  # noqa: E731
        heap[p] = (per(h1), per(h2), err)
        if err:
            errors.append(f"heap {p}: {err.replace('_', ' ')}")

    ceilings = {}  # engine -> name -> (value, unit)
    for engine, fname in (("project", "ceiling.txt"), ("debian", "ceiling-stock.txt")):
        path = work / fname
        for line in (path.read_text().splitlines() if path.exists() else []):
            if line and not line.startswith("#"):
                name, value, unit = line.split()
                ceilings.setdefault(engine, {})[name] = (float(value), unit)

    out = []
    out.append("# moat beside nginx and HAProxy: bench/run.sh")
    for key in ("setup", "versions", "load"):
        for v in meta[key]:
            out.append(f"# {key}: {v}")
    for p in proxies:
        died_note = "  (DIED during the run)" if p in died else ""
        out.append(f"# {p} negotiates: {negotiated[p]}{died_note}")
    out.append("")

    ratio_of = [m for m in ("moat", "moat-stock") if m in proxies and "nginx" in proxies]
    head = ["figure", "unit"] + proxies + [f"{m}/nginx" for m in ratio_of]
    rows = [head]

    def add_row(label, unit, values, show_ratio=True):
        row = [label, unit] + [fmt(values.get(p)) for p in proxies]
        for m in ratio_of:
            r = ratio(values.get(m), values.get("nginx")) if show_ratio else None
            row.append(fmt(r, 2) if r is not None else "-")
        rows.append(row)

    for test, label, unit, unit_cpu in TESTS:
        add_row(label, unit, {p: median(p, test, "rate") for p in proxies})
        add_row("  per proxy CPU-second", unit_cpu,
                {p: median(p, test, "per_cpu") for p in proxies})
        busy = {p: (median(p, test, "busy") or 0) * 100 for p in proxies if (p, test) in samples}
        client = {p: median(p, test, "client_busy") * 100 for p in proxies if (p, test) in samples}
        add_row("  proxy CPU busy", "%", busy, show_ratio=False)
        add_row("  CPU 1 busy (clients+backend)", "%", client, show_ratio=False)
    add_row("idle TLS conn, after handshake", "KiB/conn",
            {p: idle[p][0] for p in proxies if p in idle})
    add_row("idle TLS conn, after 1 request", "KiB/conn",
            {p: idle[p][1] for p in proxies if p in idle})
    if transfer:
        add_row("conn in full transfer (1 MiB responses)", "KiB/conn",
                {p: transfer[p] for p in proxies if p in transfer})
    if heap:
        add_row("  malloc heap, after handshake", "KiB/conn",
                {p: heap[p][0] for p in proxies if p in heap}, show_ratio=False)
        add_row("  malloc heap, after 1 request", "KiB/conn",
                {p: heap[p][1] for p in proxies if p in heap}, show_ratio=False)

    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        out.append("  ".join(cells).rstrip())

    out.append("")
    engines = [e for e in ("project", "debian") if e in ceilings]
    if engines:
        out.append("mbedTLS ceiling, server side only, per CPU-second (bench/tls-ceiling), on the "
                   + " and ".join({"project": "project's engine", "debian": "Debian's library"}[e]
                                  for e in engines) + ":")
        names = list(dict.fromkeys(n for e in engines for n in ceilings[e]))
        for name in names:
            cells = [fmt(ceilings[e].get(name, (None, ""))[0]) for e in engines]
            unit = next(ceilings[e][name][1] for e in engines if name in ceilings[e])
            gain = ""
            if len(engines) == 2 and name in ceilings["project"] and name in ceilings["debian"]:
                r = ratio(ceilings["project"][name][0], ceilings["debian"][name][0])
                gain = f"  ({r:.2f}x)" if r is not None else ""
            out.append(f"  {name:55} " + " ".join(f"{c:>10}" for c in cells) + f" {unit}{gain}")

    if "moat" in proxies and "nginx" in proxies:
        version, suite = (negotiated["moat"].split() + ["", ""])[:2]
        out.append("")
        out.append(f"moat (project engine) against the TLS engine issue's targets, per proxy "
                   f"CPU-second ({version} {suite}):")

        def target(label, r, goal, at_most=False):
            ok = None if r is None else (r <= goal if at_most else r >= goal)
            verdict = "-" if ok is None else ("ok" if ok else "MISSED")
            sign = "<=" if at_most else ">="
            shown = f"{r:.2f}x" if r is not None else "-"
            out.append(f"  {label:50} {shown:>10}   target {sign} {goal:.2f}x {verdict}")

        for test, label, goal in (
            ("keepalive", "keep-alive req/s, moat/nginx", TARGET_KEEPALIVE),
            ("handshakes", "full handshakes ECDSA, moat/nginx", TARGET_HANDSHAKES),
            ("handshakes_rsa", "full handshakes RSA, moat/nginx", TARGET_HANDSHAKES),
            ("download", "1 MiB responses, moat/nginx", TARGET_BULK),
            ("upload", "1 MiB uploads, moat/nginx", TARGET_BULK),
        ):
            target(label, ratio(median("moat", test, "per_cpu"), median("nginx", test, "per_cpu")),
                   goal)
        target("keep-alive, 4 weighted backends, moat/nginx",
               ratio(median("moat", "keepalive_lb", "per_cpu"),
                     median("nginx", "keepalive_lb", "per_cpu")), TARGET_LB)
        target("keep-alive, 4 backends / 1 backend, moat",
               ratio(median("moat", "keepalive_lb", "per_cpu"),
                     median("moat", "keepalive", "per_cpu")), TARGET_LB_VS_ONE)
        for i, when in ((0, "after handshake"), (1, "after 1 request")):
            r = ratio((idle.get("moat") or (None, None, ""))[i],
                      (idle.get("nginx") or (None, None, ""))[i])
            target(f"RSS per idle TLS conn {when}, moat/nginx", r, TARGET_IDLE_RSS, at_most=True)
        ssl_heap = ceilings.get("project", {}).get("ceiling_idle_ssl_total", (None, ""))[0]
        kib = heap.get("moat", (None, None, ""))[1]
        if ssl_heap is not None and kib is not None:
            out.append(f"  moat's malloc heap per idle conn after 1 request: {kib:.1f} KiB (its "
                       f"record buffers are on pages of their own, counted by RSS only); one "
                       f"mbedTLS context on calloc: {ssl_heap / 1024:.1f} KiB (tls-ceiling)")

    if errors:
        out.append("")
        out.append("errors reported by the load tools (figures above include these samples):")
        out += [f"  {e}" for e in errors]
    print("\n".join(out))


if __name__ == "__main__":
    main()
