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
