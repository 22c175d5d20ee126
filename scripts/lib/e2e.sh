# Browser tests: run_browser_tests PG_PORT TMP [playwright arguments…] starts the real server
# (built by `cargo leptos build` into target/; the release build's with E2E_PROFILE=release) against a fresh database `hermetic_e2e` of the
# PostgreSQL on PG_PORT, with the dev SMTP listener and a local DNS server, and runs the Playwright
# suite in Debian's Chromium. Sets SERVER_PID and DNS_SERVER_PID for the caller's cleanup; the
# server's log is $TMP/e2e-server.log. Used by scripts/test and scripts/e2e. Source common.sh first.

run_browser_tests() {
  local PG_PORT="$1" TMP="$2"
  shift 2
  # A fresh browser-test database every run.
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U hermetic -d postgres -c 'DROP DATABASE IF EXISTS hermetic_e2e WITH (FORCE)'
  pg_ensure_db "$PG_PORT" hermetic_e2e
  E2E_PORT="$(free_port)"
  export HERMETIC_DATABASE_URL="postgres://hermetic@127.0.0.1:$PG_PORT/hermetic_e2e"
  HERMETIC_ROOT_KEY="$(head -c 32 /dev/urandom | base64)"
  export HERMETIC_ROOT_KEY
  export HERMETIC_LISTEN="127.0.0.1:$E2E_PORT"
  export HERMETIC_PUBLIC_URL="http://127.0.0.1:$E2E_PORT"
  export HERMETIC_SITE_ROOT="$HERMETIC_ROOT/target/site"
  export HERMETIC_SESSION__IDLE_TIMEOUT_SECS=30
  export HERMETIC_SESSION__IDLE_WARNING_SECS=10
  export HERMETIC_LOG_FORMAT=json
  # Webhook specs post to a receiver on loopback (development setting; off in production).
  export HERMETIC_WEBHOOKS__ALLOW_PRIVATE=true
  # Mail goes over STARTTLS to the dev SMTP listener inside the server, as with scripts/dev.
  make_test_certs "$TMP/dev-smtp" >/dev/null
  SMTP_PORT="$(free_port)"
  export HERMETIC_MAIL__SMTP_HOST=localhost
  export HERMETIC_MAIL__SMTP_PORT="$SMTP_PORT"
  export HERMETIC_MAIL__SMTP_CA_FILE="$TMP/dev-smtp/ca.pem"
  export HERMETIC_MAIL__SMTP_TAG_ORGANISATION=true
  # Development messages are DKIM-signed too (a development key), as production ones would be.
  make_dkim_key "$TMP/dev-smtp" >/dev/null
  export HERMETIC_MAIL__DKIM_SELECTOR=dev
  export HERMETIC_MAIL__DKIM_DOMAIN=hermetic.localhost
  export HERMETIC_MAIL__DKIM_KEY_FILE="$TMP/dev-smtp"/dkim.pem
  export HERMETIC_MAIL__DEV_SMTP_LISTEN="127.0.0.1:$SMTP_PORT"
  export HERMETIC_MAIL__DEV_SMTP_CERT_FILE="$TMP/dev-smtp/server.pem"
  export HERMETIC_MAIL__DEV_SMTP_KEY_FILE="$TMP/dev-smtp/server.key"
  # Sending domains are checked against a local DNS server serving $TMP/dns/zone (read on every
  # query); the browser tests publish records by writing it (E2E_DNS_ZONE).
  start_dns_server "$TMP/dns/zone"
  export HERMETIC_MAIL__DNS_RESOLVER="127.0.0.1:$DNS_SERVER_PORT"
  export E2E_DNS_ZONE="$TMP/dns/zone"
  BIN="$HERMETIC_ROOT/target/${E2E_PROFILE:-debug}/server"
  "$BIN" migrate >/dev/null
  "$BIN" admin create-org --name "E2E Clinic" >/dev/null
  # The e2e organisation's sending domain, the real way: add, publish the printed records, verify.
  "$BIN" admin add-sending-domain --org "E2E Clinic" --domain e2e-clinic.example --zone | publish_zone_lines "$TMP/dns/zone"
  "$BIN" admin verify-sending-domain --org "E2E Clinic" --domain e2e-clinic.example >/dev/null \
    || die "the e2e sending domain did not verify"
  "$BIN" serve > "$TMP/e2e-server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 60); do
    curl -fsS "$HERMETIC_PUBLIC_URL/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "$HERMETIC_PUBLIC_URL/healthz" >/dev/null || { tail -50 "$TMP/e2e-server.log"; die "the server did not start"; }

  if ! (cd end2end && E2E_BASE_URL="$HERMETIC_PUBLIC_URL" E2E_SERVER_BIN="$BIN" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npx playwright test "$@"); then
    log "server log (last 60 lines):"
    tail -60 "$TMP/e2e-server.log" >&2
    die "browser tests failed"
  fi
}
