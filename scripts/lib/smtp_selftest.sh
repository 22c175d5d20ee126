#!/usr/bin/env bash
# Self-test of the SMTP test and benchmark tooling (ensure_smtp_tools, make_test_certs,
# make_dkim_key, smtp_capture.py, dkim_verify.py, mime_check.py, smtp-sink/smtp-source).
#   bash scripts/lib/smtp_selftest.sh
# The first run on a machine installs the tools (seconds); later runs reuse them.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_smtp_tools
LIB="$HERMETIC_ROOT/scripts/lib"
PY="$SMTP_TOOLS_PYTHON"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hermetic-smtp-selftest.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0
pass() { PASSED=$((PASSED + 1)); log "ok: $*"; }

# start_capture NAME ARGS... — runs smtp_capture.py in the background, sets CAPTURE_PORT.
start_capture() {
  local name="$1"; shift
  mkdir -p "$WORK/$name"
  "$PY" "$LIB/smtp_capture.py" --listen 127.0.0.1:0 --out "$WORK/$name/out" "$@" \
    >"$WORK/$name/stdout" 2>"$WORK/$name/stderr" &
  PIDS+=($!)
  local i
  for i in $(seq 100); do
    if grep -q '^READY ' "$WORK/$name/stdout" 2>/dev/null; then
      CAPTURE_PORT="$(awk '/^READY /{print $2; exit}' "$WORK/$name/stdout")"
      return 0
    fi
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/$name/stderr" >&2; die "smtp_capture.py ($name) exited"; }
    sleep 0.1
  done
  die "smtp_capture.py ($name) did not print READY within 10 s"
}

# --- certificates and DKIM key -------------------------------------------------------------
make_test_certs "$WORK/certs"
make_dkim_key "$WORK/dkim"
openssl verify -CAfile "$WORK/certs/ca.pem" "$WORK/certs/server.pem" >/dev/null || die "server.pem does not verify"
if openssl verify -CAfile "$WORK/certs/ca.pem" "$WORK/certs/rogue.pem" >/dev/null 2>&1; then die "rogue.pem verifies"; fi
head -n1 "$WORK/dkim/dkim.pem" | grep -qx -- '-----BEGIN RSA PRIVATE KEY-----' || die "dkim.pem is not PKCS#1"
grep -q '^v=DKIM1; k=rsa; p=' "$WORK/dkim/dkim.txt" || die "dkim.txt is malformed"
pass "certificates and DKIM key"

# --- smtp_capture.py: STARTTLS required, scripted replies, stored messages, DKIM, MIME -------
start_capture tls --tls-cert "$WORK/certs/server.pem" --tls-key "$WORK/certs/server.key" --require-starttls
TLS_PORT="$CAPTURE_PORT"
start_capture plain
PLAIN_PORT="$CAPTURE_PORT"
start_capture rogue --tls-cert "$WORK/certs/rogue.pem" --tls-key "$WORK/certs/rogue.key"
ROGUE_PORT="$CAPTURE_PORT"

"$PY" - "$WORK" "$TLS_PORT" "$PLAIN_PORT" "$ROGUE_PORT" <<'PY'
import json, os, smtplib, ssl, sys, time
from email.message import EmailMessage
import dkim

work, tls_port, plain_port, rogue_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = os.path.join(work, "tls", "out")
ctx = ssl.create_default_context(cafile=os.path.join(work, "certs", "ca.pem"))

def expect(what, got, code):
    if got[0] != code:
        sys.exit(f"selftest: {what}: expected {code}, got {got}")

# Server without a certificate offers no STARTTLS.
with smtplib.SMTP("127.0.0.1", plain_port, timeout=10) as s:
    s.ehlo()
    assert not s.has_extn("starttls"), "plain server offers STARTTLS"

# A certificate not from the test CA does not verify.
with smtplib.SMTP("localhost", rogue_port, timeout=10) as s:
    s.ehlo()
    try:
        s.starttls(context=ctx)
        sys.exit("selftest: rogue certificate was accepted")
    except ssl.SSLCertVerificationError:
        pass

msg = EmailMessage()
msg["From"] = "Hermetic <news@example.test>"
msg["To"] = "bob@example.net"
msg["Subject"] = "Grüße from the self-test"
msg["Reply-To"] = "reply@example.test"
msg["Message-ID"] = "<selftest-1@example.test>"
msg["List-Unsubscribe"] = "<https://example.test/u/abc>, <mailto:u+abc@example.test>"
msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
msg["X-Hermetic-Campaign"] = "42"
msg.set_content("Hello Bob,\n.a line starting with a dot\nbye\n")
msg.add_alternative("<p>Hello <b>Bob</b></p>\n", subtype="html")
raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
sig = dkim.sign(raw, b"sel1", b"example.test", open(os.path.join(work, "dkim", "dkim.pem"), "rb").read(),
                include_headers=[b"from", b"to", b"subject", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post"])
signed = sig + raw

for host in ("localhost", "127.0.0.1"):  # name and IP SANs
    with smtplib.SMTP(host, tls_port, timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls"), "STARTTLS not offered"
        expect("MAIL before STARTTLS", s.mail("news@example.test"), 530)
        s.starttls(context=ctx)
        s.ehlo()
        if host == "127.0.0.1":
            break
        expect("MAIL", s.mail("news@example.test"), 250)
        expect("RCPT normal", s.rcpt("bob@example.net"), 250)
        expect("RCPT tempfail 1", s.rcpt("tempfail+a@example.net"), 451)
        expect("RCPT reject", s.rcpt("reject+b@example.net"), 550)
        expect("RCPT tempfail 2", s.rcpt("tempfail+a@example.net"), 451)
        expect("DATA", s.data(signed), 250)
        # Third try of the tempfail address (--tempfail-times 2) is accepted.
        expect("MAIL 2", s.mail("news@example.test"), 250)
        expect("RCPT tempfail 3", s.rcpt("TempFail+a@example.net"), 250)
        expect("DATA 2", s.data(b"Subject: second\r\n\r\nsecond\r\n"), 250)

for n in (1, 2):
    assert os.path.exists(os.path.join(out, f"{n}.eml")), f"{n}.eml missing"
meta = json.load(open(os.path.join(out, "1.json")))
assert meta["tls"] is True and meta["rcpt_tos"] == ["bob@example.net"], meta
assert meta["mail_from"] == "news@example.test" and meta["peer"].startswith("127.0.0.1:"), meta
got = open(os.path.join(out, "1.eml"), "rb").read()
assert got == signed, "stored bytes differ from what was sent"
meta2 = json.load(open(os.path.join(out, "2.json")))
assert meta2["rcpt_tos"] == ["TempFail+a@example.net"], meta2
with open(os.path.join(work, "tampered.eml"), "wb") as f:
    f.write(signed.replace(b"Hello Bob", b"Hello Eve"))
print("smtp checks passed")
PY
pass "smtp_capture.py: STARTTLS required (530 before it), rogue cert refused, plain server offers no STARTTLS, 250/451/451/250/550 replies, stored bytes and sidecar"

OUT="$WORK/tls/out"
"$PY" "$LIB/dkim_verify.py" --txt "$WORK/dkim/dkim.txt" --selector sel1 --domain example.test \
  --expect-signed From,Subject,List-Unsubscribe "$OUT/1.eml" || die "dkim_verify.py rejected a good signature"
if "$PY" "$LIB/dkim_verify.py" --txt "$WORK/dkim/dkim.txt" --selector sel1 --domain example.test "$WORK/tampered.eml"; then
  die "dkim_verify.py accepted a tampered message"
fi
if "$PY" "$LIB/dkim_verify.py" --txt "$WORK/dkim/dkim.txt" --selector other --domain example.test "$OUT/1.eml" >/dev/null; then
  die "dkim_verify.py accepted the wrong selector"
fi
if "$PY" "$LIB/dkim_verify.py" --txt "$WORK/dkim/dkim.txt" --selector sel1 --domain example.test "$OUT/2.eml" >/dev/null; then
  die "dkim_verify.py accepted an unsigned message"
fi
pass "dkim_verify.py: good signature ok; tampered body, wrong selector, unsigned all FAIL"

"$PY" "$LIB/mime_check.py" "$OUT/1.eml" > "$WORK/mime.json"
"$PY" - "$WORK/mime.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["has_text"] and m["has_html"], m
assert m["content_type"] == "multipart/alternative", m
assert m["parts"] == ["multipart/alternative", "text/plain", "text/html"], m["parts"]
h = m["headers"]
assert h["list-unsubscribe-post"] == "List-Unsubscribe=One-Click", h
assert h["list-unsubscribe"].startswith("<https://example.test/u/abc>"), h
assert h["subject"] == "Grüße from the self-test", h
assert h["x-hermetic-campaign"] == "42" and h["message-id"] == "<selftest-1@example.test>", h
assert h["reply-to"] == "reply@example.test" and h["to"] == "bob@example.net", h
assert "dkim-signature" not in h and m["duplicate_headers"] == [] and m["defects"] == [], m
assert m["text"] == "Hello Bob,\n.a line starting with a dot\nbye\n", m["text"]
assert ".a line starting with a dot" in m["text"] and "<b>Bob</b>" in m["html"], m
PY
pass "mime_check.py"

# --- Postfix smtp-sink / smtp-source --------------------------------------------------------
SINK_PORT="$(free_port)"
"$SMTP_TOOLS_SINK" -c "127.0.0.1:$SINK_PORT" 1000 >"$WORK/sink.out" 2>"$WORK/sink.err" &
PIDS+=($!)
for i in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),1).close()" "$SINK_PORT" 2>/dev/null && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/sink.err" >&2; die "smtp-sink exited"; }
  sleep 0.1
done
"$SMTP_TOOLS_SOURCE" -s 4 -l 4096 -m 200 "127.0.0.1:$SINK_PORT" || die "smtp-source (200 messages) failed"
pass "smtp-sink accepted 200 messages from smtp-source"

MESSAGES=2000
START="$(date +%s.%N)"
"$SMTP_TOOLS_SOURCE" -s 4 -l 4096 -m "$MESSAGES" "127.0.0.1:$SINK_PORT" || die "smtp-source ($MESSAGES messages) failed"
END="$(date +%s.%N)"
# smtp-sink -c prints running counters ("connections messages") separated by carriage returns.
sleep 0.2
COUNT="$(tr '\r' '\n' < "$WORK/sink.out" | awk 'NF {last=$0} END {print last}')"
python3 - "$START" "$END" "$MESSAGES" "$COUNT" <<'PY'
import sys
start, end, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"smtp-source -s 4 -l 4096 -m {n}: {end - start:.3f} s, {n / (end - start):.0f} messages/s "
      f"(smtp-sink counters: {sys.argv[4] or 'n/a'})")
PY
case "$COUNT" in *"mesg=$((MESSAGES + 200))"*) ;; *) die "smtp-sink counted '$COUNT', expected mesg=$((MESSAGES + 200))" ;; esac
pass "smtp-source benchmark"

echo "smtp_selftest: $PASSED passed, 0 failed"
