# Shared helpers for scripts/dev, scripts/test and scripts/bench. Source it; do not run it.
# Everything here is idempotent: tools already present are reused, so only the first run on a new
# machine pays for installation.

set -euo pipefail

HERMETIC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
CARGO_LEPTOS_VERSION="0.3.10"
WASM_BINDGEN_VERSION="0.2.130"
BINARYEN_VERSION="132"
# Tools that must persist between runs but do not belong in the repository.
TOOLS_DIR="${HERMETIC_TOOLS_DIR:-$HOME/.local/share/hermetic-tools}"
export PATH="$HOME/.cargo/bin:$TOOLS_DIR/npm/node_modules/.bin:$PATH"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mxx\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_postgres() {
  if [ ! -x "$PGBIN/initdb" ] || [ ! -d /usr/share/postgresql/15/extension ] || [ ! -f /usr/share/postgresql/15/extension/hstore.control ]; then
    apt_install postgresql-15 postgresql-contrib
  fi
  [ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 not found in $PGBIN"
}

ensure_rust_tools() {
  command -v cargo >/dev/null || die "the Rust toolchain (cargo) is required: https://rustup.rs"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    log "installing cargo-leptos $CARGO_LEPTOS_VERSION (once per machine, about 15 minutes)"
    cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once per machine, a few minutes)"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

ensure_node() {
  if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  # wasm-opt for release builds. Debian's binaryen (108) produces broken wasm: use npm's.
  if ! [ -x "$TOOLS_DIR/npm/node_modules/.bin/wasm-opt" ]; then
    log "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
    mkdir -p "$TOOLS_DIR/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR/npm" "binaryen@$BINARYEN_VERSION" >/dev/null
  fi
}

# The release build: the server (target/release/server) and the site (target/site) with hashed
# file names (hash-files in Cargo.toml; the names are in target/release/hash.txt, next to the
# binary, where the server looks for them) and a brotli and a gzip copy of every file
# (--precompress), which the server sends to browsers that accept them. wasm-opt (npm binaryen)
# must be on PATH: `cargo leptos build --release` runs it, and it is not a Rust tool.
# The WebAssembly is split by route (--split, and the app's `split` feature that makes the pages
# lazy routes): the main module has the sign-in page, each other page's code is in chunks
# (pkg/*.wasm beside it, pkg/__wasm_split.<hash>.js loads them, __wasm_split_manifest.<hash>.json
# tells the server which chunks a page needs; all hashed and precompressed like the rest).
build_release() {
  ensure_rust_tools
  ensure_node
  # A stale sqlx DATABASE_URL would make the build check queries against it (STACK.md).
  unset DATABASE_URL
  log "release build (server and optimised WebAssembly; several minutes from cold)"
  cargo leptos build --release --precompress --split --lib-features hydrate --lib-features split --cargo-locked "$@"
  ls "$HERMETIC_ROOT"/target/site/pkg/__wasm_split_manifest.*.json >/dev/null 2>&1 || die "the release build wrote no split manifest"
  [ -s "$HERMETIC_ROOT/target/release/hash.txt" ] || die "the release build wrote no target/release/hash.txt"
  ls "$HERMETIC_ROOT"/target/site/pkg/*.wasm.br >/dev/null 2>&1 || die "the release build wrote no precompressed WebAssembly"
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

ensure_e2e_deps() {
  ensure_chromium
  if [ ! -d "$HERMETIC_ROOT/end2end/node_modules/playwright-core" ] || [ "$HERMETIC_ROOT/end2end/package-lock.json" -nt "$HERMETIC_ROOT/end2end/node_modules/.package-lock.json" ]; then
    log "installing end-to-end test packages"
    (cd "$HERMETIC_ROOT/end2end" && npm ci --silent --no-audit --no-fund >/dev/null)
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# pg_start DIR PORT MODE — start (creating if needed) a private cluster in DIR on 127.0.0.1:PORT.
# MODE=durable keeps PostgreSQL's safety settings (the dev cluster holds a user's data);
# MODE=throwaway turns off fsync for speed (test clusters are deleted afterwards).
# MODE=server is durable with the memory and WAL sizing of a production database server.
pg_start() {
  local dir="$1" port="$2" mode="$3"
  mkdir -p "$dir"
  dir="$(realpath "$dir")"
  local owner=""
  if [ "$(id -u)" -eq 0 ]; then owner=postgres; chown postgres: "$dir"; chmod 700 "$dir"; fi
  run_pg() { if [ -n "$owner" ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "creating a private PostgreSQL cluster in $dir"
    run_pg "$PGBIN/initdb" -D "$dir/data" -U hermetic --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300"
  if [ "$mode" = throwaway ]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  # Server sizing for a database server (fsync and full-page writes stay on): more cache and
  # fewer forced checkpoints during bulk writes. Used by the benchmarks.
  if [ "$mode" = server ]; then opts="$opts -c shared_buffers=2GB -c max_wal_size=8GB -c checkpoint_timeout=15min -c wal_buffers=64MB"; fi
  # Extra server settings for a diagnostic run, e.g.
  # PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements" scripts/bench send ...
  if [ -n "${PG_EXTRA_OPTS:-}" ]; then opts="$opts $PG_EXTRA_OPTS"; fi
  if ! run_pg "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    run_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$opts" start >/dev/null
  fi
}

pg_stop() {
  local dir="$1"
  [ -f "$dir/data/PG_VERSION" ] || return 0
  dir="$(realpath "$dir")"
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1) || true
  else
    "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  fi
}

# The dev cluster lives in .data/pg. PostgreSQL refuses to run as root, so as root the server runs
# as the postgres user, which must be able to reach that directory. When the checkout sits where
# postgres cannot go (under /root, in a private temporary directory), the cluster is kept in
# /var/lib/hermetic-dev/<hash of the checkout path> and .data/pg is a link to it.
prepare_dev_pg_dir() {
  local data="$1"
  [ "$(id -u)" -eq 0 ] || return 0
  chmod 711 "$data"
  if [ -L "$data/pg" ] || (cd / && runuser -u postgres -- test -x "$data"); then return 0; fi
  local alt="/var/lib/hermetic-dev/$(printf '%s' "$HERMETIC_ROOT" | sha256sum | cut -c1-16)"
  mkdir -p "$alt"
  chown postgres: "$alt"
  chmod 700 "$alt"
  if [ -e "$data/pg" ]; then
    [ -f "$data/pg/data/PG_VERSION" ] && die "$data/pg holds a cluster that the postgres user cannot reach; move the checkout or fix permissions"
    rm -rf "$data/pg"
  fi
  ln -s "$alt" "$data/pg"
  log "the database files live in $alt (linked from .data/pg): postgres cannot reach $data"
}

# Run SQL as the cluster superuser against database $2 (default postgres).
pg_sql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U hermetic -d "${3:-postgres}" -c "$2"; }

pg_ensure_db() {
  local port="$1" db="$2"
  if ! psql -X -tA -h 127.0.0.1 -p "$port" -U hermetic -d postgres -c "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    pg_sql "$port" "CREATE DATABASE \"$db\""
  fi
}

# A root key file (32 random bytes, base64) readable only by its owner.
ensure_root_key() {
  local file="$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$(dirname "$file")"
    (umask 077; head -c 32 /dev/urandom | base64 > "$file")
    log "generated a new root key in $file (back it up: without it the data cannot be decrypted)"
  fi
  chmod 600 "$file"
}

# ---------------------------------------------------------------------------------------------
# SMTP test and benchmark tools (scripts/lib/smtp_selftest.sh exercises all of them).
#
# ensure_smtp_tools installs, once per machine, into $TOOLS_DIR/smtp:
#   venv-<hash>/      Python venv with the pins below (named after them, so checkouts with other
#                     pins never delete each other's); SMTP_TOOLS_PYTHON=venv-<hash>/bin/python
#   debs/             the downloaded postfix .deb (apt-get download: postfix is NOT installed or run)
#   postfix/          that .deb extracted with dpkg -x
#   bin/smtp-sink     wrappers setting LD_LIBRARY_PATH=postfix/usr/lib/postfix;
#   bin/smtp-source   SMTP_TOOLS_SINK / SMTP_TOOLS_SOURCE point at them
# and exports SMTP_TOOLS_CAPTURE, SMTP_TOOLS_DKIM_VERIFY, SMTP_TOOLS_MIME_CHECK, SMTP_TOOLS_DNS,
# OPENAPI_CHECK and SMTP_TOOLS_PROM_PARSE (the scripts in scripts/lib, to be run with
# $SMTP_TOOLS_PYTHON; the venv also holds openapi-spec-validator for the API's OpenAPI document and
# the Prometheus client, whose own text-format parser checks /metrics). ensure_py_tools does only the
# venv part (scripts/dev needs the DNS server, not Postfix). As root the smtp-sink wrapper adds
# `-u nobody` (smtp-sink refuses to run as root without -u) unless a -u option is given.
SMTP_PY_PINS="aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0 dkimpy==1.1.8 dnspython==2.9.2 dnslib==0.9.26 prometheus_client==0.26.0"
# openapi-spec-validator and everything it pulls in, pinned: server/tests/it/openapi.rs validates the
# served OpenAPI document with it and checks real answers against the document's schemas
# (scripts/lib/openapi_check.py).
OPENAPI_PY_PINS="openapi-spec-validator==0.9.0 openapi-schema-validator==0.9.0 jsonschema==4.26.0 \
jsonschema-path==0.5.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
lazy-object-proxy==1.13.0 pathable==0.6.0 PyYAML==6.0.4 rfc3339-validator==0.1.4 six==1.17.0 \
pydantic==2.14.4 pydantic-settings==2.16.3 pydantic_core==2.50.5 annotated-types==0.8.0 \
typing-inspection==0.4.5 typing_extensions==4.16.0 python-dotenv==1.2.4"
PY_TOOLS_PINS="$SMTP_PY_PINS $OPENAPI_PY_PINS"
SMTP_TOOLS_DIR="$TOOLS_DIR/smtp"

# Prints the shared libraries that smtp-sink/smtp-source (or Postfix's own libraries) cannot find.
_smtp_missing_libs() {
  local pf="$1" f
  for f in "$pf/usr/sbin/smtp-sink" "$pf/usr/sbin/smtp-source" "$pf"/usr/lib/postfix/*.so; do
    LD_LIBRARY_PATH="$pf/usr/lib/postfix" ldd "$f" 2>/dev/null | awk '/not found/ {print $1}'
  done | sort -u
}

# Writes $2 to file $1 (mode 755) unless it already has exactly that content.
_write_if_changed() {
  if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then
    printf '%s\n' "$2" > "$1.tmp.$$"
    chmod 755 "$1.tmp.$$"
    mv -f "$1.tmp.$$" "$1"
  fi
}

# Sets SMTP_POSTFIX_DEB to the postfix .deb cached in DIR, downloading it first if needed.
_smtp_postfix_deb() {
  local debs="$1"
  mkdir -p "$debs"
  SMTP_POSTFIX_DEB="$(ls -t "$debs"/postfix_*.deb 2>/dev/null | head -n1 || true)"
  [ -n "$SMTP_POSTFIX_DEB" ] && return 0
  log "downloading the postfix package for smtp-sink/smtp-source (it is not installed)"
  # As root apt-get download warns that _apt cannot write here; harmless.
  if ! (cd "$debs" && apt-get download postfix >"$debs/apt-download.log" 2>&1); then
    if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq >/dev/null; APT_UPDATED=1; fi
    (cd "$debs" && apt-get download postfix >"$debs/apt-download.log" 2>&1) \
      || { cat "$debs/apt-download.log" >&2; return 1; }
  fi
  SMTP_POSTFIX_DEB="$(ls -t "$debs"/postfix_*.deb | head -n1)"
}

# (Not HERMETIC_*: the server reads every HERMETIC_* variable as a setting and refuses unknown ones.)
ensure_smtp_tools() {
  ensure_py_tools
  local dir="$SMTP_TOOLS_DIR"
  local pf="$dir/postfix" bin="$dir/bin" debs="$dir/debs"
  # Serialise concurrent first runs (tests and benchmarks may start together).
  local lockfd
  exec {lockfd}>"$dir/.lock"
  flock "$lockfd"

  # 2. Postfix's smtp-sink and smtp-source, from the downloaded (not installed) postfix package.
  if [ ! -x "$pf/usr/sbin/smtp-sink" ] || [ ! -x "$pf/usr/sbin/smtp-source" ]; then
    _smtp_postfix_deb "$debs" || { exec {lockfd}>&-; die "apt-get download postfix failed"; }
    rm -rf "$pf.new"
    dpkg -x "$SMTP_POSTFIX_DEB" "$pf.new"
    rm -rf "$pf"
    mv "$pf.new" "$pf"
  fi
  # Shared libraries the binaries need (libdb5.3, libicu72, libnsl2, ... on Debian 12): install the
  # library packages postfix depends on when ldd reports one missing.
  if [ -n "$(_smtp_missing_libs "$pf")" ]; then
    log "installing the libraries smtp-sink needs: $(_smtp_missing_libs "$pf" | tr '\n' ' ')"
    _smtp_postfix_deb "$debs" || { exec {lockfd}>&-; die "apt-get download postfix failed"; }
    local libs
    libs="$(dpkg-deb -f "$SMTP_POSTFIX_DEB" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep '^lib' || true)"
    # shellcheck disable=SC2086
    apt_install $libs
    local still
    still="$(_smtp_missing_libs "$pf")"
    [ -z "$still" ] || { exec {lockfd}>&-; die "smtp-sink still misses libraries: $still"; }
  fi
  mkdir -p "$bin"
  _write_if_changed "$bin/smtp-sink" "#!/bin/sh
# Generated by ensure_smtp_tools (scripts/lib/common.sh): Postfix smtp-sink from an extracted .deb.
export LD_LIBRARY_PATH=\"$pf/usr/lib/postfix\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"
# smtp-sink refuses to run as root without -u USER.
if [ \"\$(id -u)\" -eq 0 ]; then
  has_u=0
  for a in \"\$@\"; do case \"\$a\" in -u*) has_u=1 ;; esac; done
  [ \"\$has_u\" -eq 1 ] || set -- -u nobody \"\$@\"
fi
exec \"$pf/usr/sbin/smtp-sink\" \"\$@\""
  _write_if_changed "$bin/smtp-source" "#!/bin/sh
# Generated by ensure_smtp_tools (scripts/lib/common.sh): Postfix smtp-source from an extracted .deb.
export LD_LIBRARY_PATH=\"$pf/usr/lib/postfix\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"
exec \"$pf/usr/sbin/smtp-source\" \"\$@\""
  export SMTP_TOOLS_SINK="$bin/smtp-sink"
  export SMTP_TOOLS_SOURCE="$bin/smtp-source"

  # 3. openssl for make_test_certs / make_dkim_key.
  command -v openssl >/dev/null || apt_install openssl

  exec {lockfd}>&-
}

# The Python venv (aiosmtpd, dkimpy, dnslib, openapi-spec-validator, prometheus_client; pinned) and the scripts run with it.
ensure_py_tools() {
  local dir="$SMTP_TOOLS_DIR"
  local venv
  venv="$dir/venv-$(printf '%s' "$PY_TOOLS_PINS" | sha256sum | cut -c1-12)"
  mkdir -p "$dir"
  local lockfd
  exec {lockfd}>"$dir/.lock"
  flock "$lockfd"
  if [ "$(cat "$venv/.hermetic-pins" 2>/dev/null)" != "$PY_TOOLS_PINS" ] \
      || ! "$venv/bin/python" -c 'import aiosmtpd, dkim, dnslib, openapi_spec_validator, openapi_schema_validator, prometheus_client' 2>/dev/null; then
    log "creating the Python test-tools venv in $venv ($PY_TOOLS_PINS)"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check --no-input $PY_TOOLS_PINS >/dev/null \
      || { rm -rf "$venv"; exec {lockfd}>&-; die "pip install of $PY_TOOLS_PINS failed"; }
    printf '%s\n' "$PY_TOOLS_PINS" > "$venv/.hermetic-pins"
  fi
  export SMTP_TOOLS_PYTHON="$venv/bin/python"
  export SMTP_TOOLS_CAPTURE="$HERMETIC_ROOT/scripts/lib/smtp_capture.py"
  export SMTP_TOOLS_DKIM_VERIFY="$HERMETIC_ROOT/scripts/lib/dkim_verify.py"
  export SMTP_TOOLS_MIME_CHECK="$HERMETIC_ROOT/scripts/lib/mime_check.py"
  export SMTP_TOOLS_DNS="$HERMETIC_ROOT/scripts/lib/dns_server.py"
  export OPENAPI_CHECK="$HERMETIC_ROOT/scripts/lib/openapi_check.py"
  export SMTP_TOOLS_PROM_PARSE="$HERMETIC_ROOT/scripts/lib/prom_parse.py"
  exec {lockfd}>&-
}

# make_test_certs DIR — a throwaway PKI for the STARTTLS tests, valid 30 days (EC P-256, with SAN):
#   ca.pem/ca.key          test CA (the root certificate the client is told to trust)
#   server.pem/server.key  DNS:localhost + IP:127.0.0.1, issued by that CA
#   rogue.pem/rogue.key    self-signed DNS:localhost + IP:127.0.0.1, NOT from the CA (must fail)
# Reuses existing files while server.pem is valid for at least another day.
make_test_certs() {
  local dir="${1:?usage: make_test_certs DIR}"
  mkdir -p "$dir"
  local f ok=1
  for f in ca.pem ca.key server.pem server.key rogue.pem rogue.key; do [ -s "$dir/$f" ] || ok=0; done
  if [ "$ok" -eq 1 ] && openssl x509 -in "$dir/server.pem" -noout -checkend 86400 >/dev/null 2>&1 \
      && openssl x509 -in "$dir/rogue.pem" -noout -checkend 86400 >/dev/null 2>&1 \
      && openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  (
    umask 077
    cd "$dir" || exit 1
    cat > .ca.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Hermetic Test CA
O = Hermetic tests
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    cat > .leaf.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
O = Hermetic tests
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[rogue]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
CNF
    newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    # (set -e does not apply inside a subshell that is the left side of ||: check each step.)
    newkey ca.key || exit 1
    openssl req -new -x509 -key ca.key -days 30 -sha256 -config .ca.cnf -extensions ext \
      -set_serial "0x$(openssl rand -hex 16)" -out ca.pem || exit 1
    newkey server.key || exit 1
    openssl req -new -key server.key -config .leaf.cnf -out .server.csr || exit 1
    openssl x509 -req -in .server.csr -CA ca.pem -CAkey ca.key -days 30 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile .leaf.cnf -extensions server -out server.pem 2>/dev/null || exit 1
    newkey rogue.key || exit 1
    openssl req -new -x509 -key rogue.key -days 30 -sha256 -config .leaf.cnf -extensions rogue \
      -set_serial "0x$(openssl rand -hex 16)" -out rogue.pem || exit 1
    rm -f .ca.cnf .leaf.cnf .server.csr
    chmod 644 ca.pem server.pem rogue.pem
  ) || die "make_test_certs $dir failed"
}

# make_dkim_key DIR — dkim.pem: RSA-2048 private key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY", what
# lettre's DkimSigningKey wants); dkim.txt: its DNS TXT value "v=DKIM1; k=rsa; p=<base64 SPKI>".
# Reuses an existing pair.
make_dkim_key() {
  local dir="${1:?usage: make_dkim_key DIR}"
  mkdir -p "$dir"
  if [ -s "$dir/dkim.txt" ] && grep -q 'BEGIN RSA PRIVATE KEY' "$dir/dkim.pem" 2>/dev/null; then return 0; fi
  (
    umask 077
    # OpenSSL 3 writes PKCS#8 unless told -traditional; OpenSSL 1.1 has no such flag (PKCS#1 already).
    openssl genrsa -traditional -out "$dir/dkim.pem.tmp" 2048 2>/dev/null \
      || openssl genrsa -out "$dir/dkim.pem.tmp" 2048 2>/dev/null || exit 1
    grep -q 'BEGIN RSA PRIVATE KEY' "$dir/dkim.pem.tmp" || exit 1
    pub="$(openssl rsa -in "$dir/dkim.pem.tmp" -pubout -outform DER 2>/dev/null | base64 -w0)" || exit 1
    [ -n "$pub" ] || exit 1
    printf 'v=DKIM1; k=rsa; p=%s\n' "$pub" > "$dir/dkim.txt.tmp" || exit 1
    mv -f "$dir/dkim.pem.tmp" "$dir/dkim.pem" || exit 1
    mv -f "$dir/dkim.txt.tmp" "$dir/dkim.txt" || exit 1
    chmod 644 "$dir/dkim.txt"
  ) || die "make_dkim_key $dir failed"
}

# start_dns_server ZONEFILE [PORT] — the local authoritative DNS server (scripts/lib/dns_server.py)
# for sending-domain checks, serving ZONEFILE (read again on every query; created empty if
# missing) on 127.0.0.1:PORT (default: a free port). Needs ensure_py_tools. Sets DNS_SERVER_PID
# and DNS_SERVER_PORT; the caller stops it (kill "$DNS_SERVER_PID").
start_dns_server() {
  local zone="${1:?usage: start_dns_server ZONEFILE [PORT]}" port="${2:-0}"
  mkdir -p "$(dirname "$zone")"
  [ -e "$zone" ] || : > "$zone"
  local ready="$zone.ready"
  rm -f "$ready"
  "$SMTP_TOOLS_PYTHON" "$SMTP_TOOLS_DNS" --zone "$zone" --listen "127.0.0.1:$port" > "$ready" 2> "$zone.log" &
  DNS_SERVER_PID=$!
  local _
  for _ in $(seq 1 50); do
    grep -q '^READY ' "$ready" 2>/dev/null && break
    kill -0 "$DNS_SERVER_PID" 2>/dev/null || { cat "$zone.log" >&2; die "the DNS server did not start"; }
    sleep 0.1
  done
  DNS_SERVER_PORT="$(awk '/^READY / {print $2}' "$ready")"
  [ -n "$DNS_SERVER_PORT" ] || die "the DNS server did not start"
}

# publish_zone_lines ZONEFILE — append the zone-file lines read on stdin that the zone lacks.
publish_zone_lines() {
  local zone="$1" line
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    grep -qxF -- "$line" "$zone" 2>/dev/null || printf '%s\n' "$line" >> "$zone"
  done
}
