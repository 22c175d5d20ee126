#!/usr/bin/env python3
"""A tiny authoritative DNS server (dnslib) for Hermetic's sending-domain checks in tests and dev.

    $SMTP_TOOLS_PYTHON scripts/lib/dns_server.py --zone ZONEFILE [--listen 127.0.0.1:0]

Serves the records of ZONEFILE over UDP and TCP on the same port. The file is read again on
every query, so a test (or `scripts/dev`) publishes or withdraws records by writing the file.
It holds zone-file lines (dnslib's parser: `name. TTL IN TXT "string" "string"`, `$TTL`,
`$ORIGIN`, comments); a missing file is an empty zone; a line that does not parse makes every
answer SERVFAIL (and is reported on stderr) rather than silently serving a partial zone.

Answers: the records of the asked name and type (CNAMEs in the zone are followed), flagged
authoritative; NOERROR with no answer when the name exists with other types only; NXDOMAIN
when the name does not exist. Names compare case-insensitively.

Once listening it prints exactly one line `READY <port>` on stdout and flushes. SIGTERM/SIGINT
stop it (exit status 0).
"""

import argparse
import os
import re
import signal
import socket
import sys
import threading

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# Queries are not logged (stdout carries only the READY line); errors go to stderr.
LOGGER = DNSLogger(log="-recv,-send,-request,-reply,-truncated", prefix=False,
                   logf=lambda s: print(f"dns_server: {s}", file=sys.stderr, flush=True))


def load_zone(path):
    """The zone's records, or None when the file does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    if not text.strip():
        return []
    try:
        records = []
        seen = set()
        # Identical records are one record (an RRset holds no duplicates, RFC 2181 5), as at any
        # DNS provider: publishing the same SPF line twice must not make two SPF records.
        for rr in RR.fromZone(text):
            k = (key(rr.rname), rr.rtype, str(rr.rdata))
            if k not in seen:
                seen.add(k)
                records.append(rr)
        return records
    except Exception as e:  # any parse failure: refuse to answer from a half-read zone
        print(f"dns_server: {path} does not parse: {e}", file=sys.stderr, flush=True)
        return None


def key(name):
    return str(name).lower().rstrip(".")


class ZoneResolver(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        records = load_zone(self.path)
        if records is None:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        qname = request.q.qname
        qtype = request.q.qtype
        name = key(qname)
        for _ in range(8):  # follow CNAMEs inside the zone, a few hops at most
            at = [rr for rr in records if key(rr.rname) == name]
            if not at:
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            wanted = [rr for rr in at if rr.rtype == qtype or qtype == QTYPE.ANY]
            if wanted:
                for rr in wanted:
                    reply.add_answer(rr)
                return reply
            cname = [rr for rr in at if rr.rtype == QTYPE.CNAME]
            if not cname:
                return reply  # NODATA
            reply.add_answer(cname[0])
            name = key(cname[0].rdata.label)
        return reply


def parse_listen(value):
    m = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", value)
    if not m:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return m.group(1) or "127.0.0.1", int(m.group(2))


def start(resolver, host, port):
    """UDP and TCP servers on one port (with port 0: a free port both protocols can take)."""
    for _ in range(50):
        p = port
        if p == 0:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            p = s.getsockname()[1]
            s.close()
        try:
            udp = DNSServer(resolver, address=host, port=p, tcp=False, logger=LOGGER)
        except OSError:
            if port:
                raise
            continue
        try:
            tcp = DNSServer(resolver, address=host, port=p, tcp=True, logger=LOGGER)
        except OSError:
            udp.server.server_close()
            if port:
                raise
            continue
        return udp, tcp, p
    raise OSError("no free port for UDP and TCP")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zone", required=True, help="zone file, read again on every query")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)")
    args = p.parse_args()
    host, port = args.listen
    resolver = ZoneResolver(os.path.abspath(args.zone))
    udp, tcp, actual = start(resolver, host, port)
    udp.start_thread()
    tcp.start_thread()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sys.stdout.write(f"READY {actual}\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    udp.stop()
    tcp.stop()


if __name__ == "__main__":
    main()
