#!/usr/bin/env python3
"""Verify DKIM signatures with dkimpy, independently of Hermetic's own signing code.

    $SMTP_TOOLS_PYTHON scripts/lib/dkim_verify.py (--txt dkim.txt | --dns HOST:PORT) --selector S \
        --domain D [--expect-signed From,Subject,...] MESSAGE.eml...

With --txt the public key is not looked up in DNS: a custom dnsfunc answers `S._domainkey.D.`
with the TXT value read from the file (e.g. `v=DKIM1; k=rsa; p=...`, as written by make_dkim_key)
and nothing for any other name, so a signature whose s=/d= differ fails. With --dns every key is
looked up through that DNS server (e.g. scripts/lib/dns_server.py serving the published zone), for
whatever s= and d= the signature names; --selector/--domain then only name what the signature
must use. Every DKIM-Signature header in a message must verify. --expect-signed also requires
those header names in the signature's h= list.

Prints `ok <file>` or `FAIL <file> <reason>` for each message; exits 1 if any failed (2 on usage).
"""

import argparse
import logging
import sys

import dkim


class ReasonLog(logging.Handler):
    """Keeps dkimpy's log messages so a failure can say why."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))

    def reason(self):
        errors = [m for lvl, m in self.records if lvl >= logging.WARNING]
        if errors:
            return errors[-1]
        invalid = [m for lvl, m in self.records if m.endswith("valid: False")]
        if invalid:
            return "signature does not verify (%s)" % invalid[-1]
        return "signature does not verify"


def signature_tags(value):
    tags = {}
    for part in value.split(b";"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            tags[k.strip().lower()] = b"".join(v.split())
    return tags


def dns_lookup(server):
    """A dkimpy dnsfunc that asks one DNS server (HOST:PORT) for TXT records."""
    import dns.resolver

    host, port = server.rsplit(":", 1)
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host.strip("[]")]
    r.port = int(port)

    def lookup(qname, timeout=5):
        if isinstance(qname, bytes):
            qname = qname.decode("ascii", "replace")
        try:
            answer = r.resolve(qname, "TXT", lifetime=timeout)
        except Exception:
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    return lookup


def verify_file(path, name, record, expect_signed, lookup=None):
    with open(path, "rb") as f:
        message = f.read()

    def dnsfunc(qname, timeout=5):
        if isinstance(qname, bytes):
            qname = qname.decode("ascii", "replace")
        return record if qname.lower().rstrip(".") == name else None

    if lookup is not None:
        dnsfunc = lookup  # noqa: F811

    reasons = ReasonLog()
    logger = logging.getLogger("dkim_verify.%s" % id(reasons))
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(reasons)

    d = dkim.DKIM(message, logger=logger)
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    if not sigs:
        return "no DKIM-Signature header"
    for idx, sig in enumerate(sigs):
        try:
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            return "signature %d: %s: %s" % (idx + 1, type(e).__name__, e)
        if not ok:
            return "signature %d: %s" % (idx + 1, reasons.reason())
        tags = signature_tags(sig)
        used = "%s._domainkey.%s" % (tags.get(b"s", b"").decode().lower(), tags.get(b"d", b"").decode().lower())
        if used != name:
            return "signature %d is by %s, not %s" % (idx + 1, used, name)
        if expect_signed:
            signed = {h.strip().lower() for h in signature_tags(sig).get(b"h", b"").decode().split(":")}
            missing = [h for h in expect_signed if h.lower() not in signed]
            if missing:
                return "signature %d does not sign: %s" % (idx + 1, ", ".join(missing))
    return None


def main():
    p = argparse.ArgumentParser(description="Verify DKIM signatures against a TXT record from a file.")
    p.add_argument("--txt", help="file with the DKIM TXT record value (v=DKIM1; k=rsa; p=...)")
    p.add_argument("--dns", help="HOST:PORT of a DNS server to look every key up with (instead of --txt)")
    p.add_argument("--selector", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--expect-signed", default="", help="comma-separated header names that h= must include")
    p.add_argument("messages", nargs="+", metavar="MESSAGE.eml")
    args = p.parse_args()
    if bool(args.txt) == bool(args.dns):
        p.error("give exactly one of --txt and --dns")

    raw, lookup = None, None
    if args.dns:
        lookup = dns_lookup(args.dns)
    else:
        with open(args.txt, "rb") as f:
            # A zone-file style value may be split into quoted strings: join them.
            raw = f.read().strip()
        if raw.startswith(b'"'):
            raw = b"".join(part for i, part in enumerate(raw.split(b'"')) if i % 2 == 1)
    name = ("%s._domainkey.%s" % (args.selector, args.domain)).lower().rstrip(".")
    expect = [h for h in args.expect_signed.split(",") if h.strip()]

    failed = 0
    for path in args.messages:
        try:
            reason = verify_file(path, name, raw, expect, lookup)
        except OSError as e:
            reason = "cannot read: %s" % e
        except Exception as e:  # a malformed message must be a FAIL line, not a traceback
            reason = "%s: %s" % (type(e).__name__, e)
        if reason is None:
            print("ok %s" % path)
        else:
            failed += 1
            print("FAIL %s %s" % (path, reason))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
