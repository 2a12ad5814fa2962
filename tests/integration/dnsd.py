"""A small authoritative DNS server on 127.0.0.1 (UDP, a port of its own), written with the
standard library, whose records a test changes while moat runs: A and AAAA answers from a
dict, one TTL, and per-name modes that fail on purpose (NXDOMAIN, SERVFAIL, no answer)."""
import socket
import struct
import threading

QTYPE_A, QTYPE_AAAA = 1, 28
RCODE_OK, RCODE_SERVFAIL, RCODE_NXDOMAIN = 0, 2, 3


def parse_question(packet):
    """(id, flags, qname in lower case, qtype, bytes of the question) of a query, or None."""
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1 or flags & 0x8000:
        return None
    labels, i = [], 12
    while i < len(packet):
        n = packet[i]
        if n == 0 or n & 0xC0:
            break
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 5 > len(packet) or packet[i] != 0:
        return None
    qtype, = struct.unpack("!H", packet[i + 1:i + 3])
    return qid, flags, ".".join(labels).lower(), qtype, packet[12:i + 5]


class DNSServer:
    """records: name -> list of IPv4/IPv6 address strings. mode: name -> "nxdomain", "servfail"
    or "drop" (no answer at all); names without records answer NXDOMAIN. queries: name -> count
    of A queries (c-ares asks A and AAAA once per lookup)."""

    def __init__(self, ttl=1):
        self.ttl = ttl
        self.records, self.mode, self.queries = {}, {}, {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)  # how soon stop() is noticed
        self.stopped = threading.Event()
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def set(self, name, *addresses):
        with self.lock:
            self.records[name.lower()] = list(addresses)
            self.mode.pop(name.lower(), None)

    def fail(self, name, mode):
        with self.lock:
            self.mode[name.lower()] = mode

    def count(self, name):
        with self.lock:
            return self.queries.get(name.lower(), 0)

    def answer(self, packet):
        q = parse_question(packet)
        if q is None:
            return None
        qid, flags, name, qtype, question = q
        with self.lock:
            if qtype == QTYPE_A:
                self.queries[name] = self.queries.get(name, 0) + 1
            mode = self.mode.get(name)
            addrs = list(self.records.get(name, []))
        if mode == "drop":
            return None
        rcode = RCODE_OK
        if mode == "servfail":
            rcode = RCODE_SERVFAIL
        elif mode == "nxdomain" or name not in self.records:
            rcode = RCODE_NXDOMAIN
        family = socket.AF_INET if qtype == QTYPE_A else socket.AF_INET6
        answers = []
        if rcode == RCODE_OK and qtype in (QTYPE_A, QTYPE_AAAA):
            for a in addrs:
                try:
                    rdata = socket.inet_pton(family, a)
                except OSError:
                    continue  # the other family
                # The owner is the question's name (a pointer to offset 12).
                answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(rdata)) +
                               rdata)
        # A response, authoritative, recursion desired copied, recursion available.
        out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        head = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0)
        return head + question + b"".join(answers)

    def serve(self):
        while not self.stopped.is_set():
            try:
                packet, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer(packet)
            if reply is not None:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()
