#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that stores what it accepts, for Hermetic's integration tests.

Run it with the venv python from `ensure_smtp_tools` (scripts/lib/common.sh):

    $SMTP_TOOLS_PYTHON scripts/lib/smtp_capture.py --listen 127.0.0.1:0 --out DIR \
        [--tls-cert server.pem --tls-key server.key [--require-starttls]] \
        [--tempfail-times K] [--tempfail-stage rcpt|data] [--no-pipelining] [--hostname NAME] [--verbose]
        [--auth-user NAME --auth-password-file FILE]

Once listening it prints exactly one line `READY <port>` on stdout (the real port when 0 was
asked) and flushes; nothing else is written to stdout.

Every accepted message N (1, 2, ... continuing after the highest number already in DIR) is
stored as:
  DIR/N.json  {"n", "mail_from", "rcpt_tos", "tls", "peer", "helo", "mail_options", "received_at"}
  DIR/N.eml   the DATA content exactly as received (CRLF line ends, dot-stuffing removed)
Both are written to a temporary name and renamed; N.json is renamed before N.eml, so once N.eml
exists N.json does too. Both exist before the client gets the 250 reply to DATA.

Scripted replies by recipient local part (case-insensitive, `name` or `name+anything`):
  tempfail  451 4.3.0 try again later, the first K times for that exact address (--tempfail-times,
            default 2), then accepted. With --tempfail-stage data the RCPT is accepted and the DATA
            reply is the 451 instead (counting once per message, for each tempfail address in it).
  reject    550 5.1.1 user unknown (always)
  anything else 250.
Only recipients that got 250 are in rcpt_tos.

PIPELINING (RFC 2920) is offered unless --no-pipelining.

AUTH: with --auth-user/--auth-password-file, AUTH PLAIN and LOGIN are offered (only after
STARTTLS) and required before MAIL; only that name and the file's password (its first line) pass.
Without them no AUTH is advertised.

TLS: with --tls-cert/--tls-key STARTTLS is offered; --require-starttls answers 530 to MAIL (and
anything but EHLO/HELO/NOOP/QUIT/STARTTLS) before STARTTLS. Without a certificate STARTTLS is not
offered at all. SIGTERM/SIGINT stop it cleanly (exit status 0).
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import re
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult

TEMPFAIL_REPLY = "451 4.3.0 try again later"
REJECT_REPLY = "550 5.1.1 user unknown"


def local_kind(address):
    """'tempfail', 'reject' or None, from the local part of an address."""
    local = address.rsplit("@", 1)[0].lower()
    base = local.split("+", 1)[0]
    if base in ("tempfail", "reject"):
        return base
    return None


class CaptureHandler:
    def __init__(self, out_dir, tempfail_times, tempfail_stage, verbose, pipelining):
        self.out_dir = out_dir
        self.pipelining = pipelining
        self.tempfail_times = tempfail_times
        self.tempfail_stage = tempfail_stage
        self.verbose = verbose
        self.tempfail_counts = {}  # lowercased address -> number of 451 replies given
        self.next_n = 1 + max(
            (int(m.group(1)) for m in map(re.compile(r"^(\d+)\.(?:eml|json)$").match, os.listdir(out_dir)) if m),
            default=0,
        )

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads commands from a stream buffer in order, so pipelined commands (and
        # content followed by the next message's commands, RFC 2920) work; it just does not say so.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    def _tempfail_now(self, address):
        key = address.lower()
        count = self.tempfail_counts.get(key, 0)
        if count < self.tempfail_times:
            self.tempfail_counts[key] = count + 1
            return True
        return False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        kind = local_kind(address)
        if kind == "reject":
            return REJECT_REPLY
        if kind == "tempfail" and self.tempfail_stage == "rcpt" and self._tempfail_now(address):
            return TEMPFAIL_REPLY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail_stage == "data":
            failing = [a for a in envelope.rcpt_tos if local_kind(a) == "tempfail" and self._tempfail_now(a)]
            if failing:
                return TEMPFAIL_REPLY
        n = self.next_n
        self.next_n += 1
        peer = session.peer
        if isinstance(peer, tuple):
            peer = "%s:%s" % (peer[0], peer[1])
        meta = {
            "n": n,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": session.ssl is not None,
            "peer": peer,
            "helo": session.host_name,
            "mail_options": list(envelope.mail_options),
            "received_at": time.time(),
        }
        self._write(f"{n}.json", json.dumps(meta).encode())
        self._write(f"{n}.eml", envelope.original_content)
        if self.verbose:
            print(f"smtp_capture: #{n} from={envelope.mail_from} to={envelope.rcpt_tos} tls={meta['tls']} "
                  f"{len(envelope.original_content)} bytes", file=sys.stderr, flush=True)
        return f"250 2.0.0 OK queued as {n}"

    def _write(self, name, data):
        tmp = os.path.join(self.out_dir, f".{name}.tmp")  # never matches *.eml / *.json
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.out_dir, name))


def parse_listen(value):
    m = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", value)
    if not m:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return m.group(1) or "127.0.0.1", int(m.group(2))


def authenticator_for(user, password):
    """An aiosmtpd authenticator that accepts exactly one name and password (compared in constant time)."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", None) or b""
        given = getattr(auth_data, "password", None) or b""
        ok = hmac.compare_digest(login, user.encode()) and hmac.compare_digest(given, password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main_async(args):
    os.makedirs(args.out, exist_ok=True)
    handler = CaptureHandler(args.out, args.tempfail_times, args.tempfail_stage, args.verbose, not args.no_pipelining)
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    host, port = args.listen
    loop = asyncio.get_running_loop()
    auth = {"auth_exclude_mechanism": ["LOGIN", "PLAIN"]}  # no AUTH advertised: tests send without it
    if args.auth_user:
        with open(args.auth_password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
        auth = {
            "authenticator": authenticator_for(args.auth_user, password),
            "auth_required": True,
            "auth_require_tls": True,
        }

    def factory():
        return SMTP(
            handler,
            hostname=args.hostname,  # never socket.getfqdn(): it may wait on DNS for every connection
            ident="Hermetic smtp_capture",
            tls_context=tls_context,
            require_starttls=args.require_starttls,
            enable_SMTPUTF8=True,
            decode_data=False,
            data_size_limit=args.max_size,
            timeout=args.timeout,
            loop=loop,
            **auth,
        )

    server = await loop.create_server(factory, host=host, port=port, backlog=1024, reuse_address=True)
    actual_port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {actual_port}\n")
    sys.stdout.flush()
    if args.verbose:
        print(f"smtp_capture: listening on {host}:{actual_port}, storing in {args.out}, "
              f"STARTTLS={'required' if args.require_starttls else 'offered' if tls_context else 'off'}",
              file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    # Close open sessions too (Server.close only stops accepting).
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    await asyncio.sleep(0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any free port)")
    p.add_argument("--out", required=True, help="directory for N.eml / N.json")
    p.add_argument("--tls-cert", help="PEM certificate chain: offer STARTTLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--require-starttls", action="store_true", help="answer 530 to MAIL before STARTTLS")
    p.add_argument("--tempfail-times", type=int, default=2, help="451 replies per tempfail+ address (default 2)")
    p.add_argument("--tempfail-stage", choices=("rcpt", "data"), default="rcpt", help="where the 451 is given")
    p.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING (RFC 2920) in EHLO")
    p.add_argument("--hostname", default="localhost", help="name in the greeting and EHLO reply")
    p.add_argument("--max-size", type=int, default=64 * 1024 * 1024, help="largest message in bytes (552 above)")
    p.add_argument("--timeout", type=float, default=300, help="idle session timeout in seconds")
    p.add_argument("--verbose", "-v", action="store_true", help="log sessions and messages to stderr")
    p.add_argument("--auth-user", help="require AUTH (PLAIN/LOGIN, after STARTTLS) with this name")
    p.add_argument("--auth-password-file", help="the password for --auth-user (first line of the file)")
    args = p.parse_args()
    if bool(args.auth_user) != bool(args.auth_password_file):
        p.error("--auth-user and --auth-password-file go together")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.require_starttls and not args.tls_cert:
        p.error("--require-starttls needs --tls-cert/--tls-key")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(name)s: %(message)s")
    # aiosmtpd logs every command at INFO on 'mail.log'; keep it quiet unless asked.
    logging.getLogger("mail.log").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
