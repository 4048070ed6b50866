#!/usr/bin/env bash
# Installs what WHAGO needs on a Debian 12 machine, as root, doing nothing that is done.
#   scripts/setup.sh venv      the virtual environment in .venv with requirements.txt
#   scripts/setup.sh services  PostgreSQL, Redis and a Docker engine, running on loopback
#   scripts/setup.sh all       both, plus the tools the test suite uses, the simulator image
#                              and real WAHA Core (built from ../shared/waha-core)
#   scripts/setup.sh simulator-image   only the WAHA simulator's container image
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
mkdir -p var

log() { printf '\033[1;32m==>\033[0m %s\n' "$*"; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv python3-dev; fi
  apt_install gettext libzbar0
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  local stamp=.venv/.requirements.sha
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing requirements.txt"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$stamp"
  fi
  # Compiled translations are committed; refresh them when a .po is newer.
  if find locale -name '*.po' -newer locale/pt_BR/LC_MESSAGES/django.mo 2>/dev/null | grep -q .; then
    .venv/bin/python manage.py compilemessages --ignore=.venv -v0
  fi
}

ensure_postgres() {
  apt_install postgresql
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h 2>/dev/null | grep -q .; then pg_createcluster "$version" main >/dev/null; fi
    pg_ctlcluster "$version" main start || service postgresql start
    for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='whago'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE whago LOGIN PASSWORD 'whago' CREATEDB\""
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='whago'\"" | grep -q 1 \
    || su postgres -c "createdb -O whago whago"
}

ensure_redis() {
  apt_install redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
    for _ in $(seq 40); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
  fi
}

ensure_docker() {
  apt_install docker.io
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    setsid nohup dockerd >"$ROOT/var/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start: see var/dockerd.log" >&2; exit 1; }
  fi
}

# The WAHA simulator's container image (debootstrap + docker import + docker build, no
# registry); waha/simulator/image.py skips it when the image is up to date.
ensure_simulator_image() {
  apt_install debootstrap
  python3 -m waha.simulator.image
}

# Real WAHA Core 2024.10.8, built from the pack in ../shared/waha-core (the suite holds WHAGO
# and the simulator to it). build.sh needs Node >= 18 with its headers; it fetches its npm
# packages from the machine's npm registry and skips a finished build (about 2 minutes once).
ensure_real_waha() {
  local pack="${WAHA_CORE_PACK:-}"
  for candidate in "$pack" "$ROOT/../shared/waha-core" /work/shared/waha-core; do
    if [ -n "$candidate" ] && [ -x "$candidate/build.sh" ]; then pack=$candidate; break; fi
  done
  if [ ! -x "$pack/build.sh" ]; then
    echo "The WAHA Core pack (build.sh) was not found: set WAHA_CORE_PACK" >&2; exit 1
  fi
  if ! command -v node >/dev/null; then apt_install nodejs libnode-dev npm; fi
  local node_prefix
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [ ! -f "$node_prefix/include/node/node_api.h" ]; then
    echo "Node $(node -v) has no headers in $node_prefix/include/node: real WAHA Core cannot be built." >&2
    echo "Install them (Debian: apt-get install libnode-dev; nodesource: its nodejs package has them)." >&2
    exit 1
  fi
  apt_install make g++ python3
  local dest="${WAHA_CORE_DIR:-/var/cache/whago/waha-core-2024.10.8}"
  mkdir -p "$dest"
  "$pack/build.sh" "$dest" | tail -n 3
}

case "${1:-all}" in
  venv) ensure_venv ;;
  services) ensure_postgres; ensure_redis; ensure_docker ;;
  all)
    ensure_venv
    apt_install debootstrap zbar-tools microsocks tinyproxy-bin chromium docker-compose
    ensure_postgres; ensure_redis; ensure_docker
    ensure_simulator_image
    ensure_real_waha
    ;;
  simulator-image) ensure_docker; ensure_simulator_image ;;
  *) echo "usage: $0 venv|services|all|simulator-image" >&2; exit 2 ;;
esac
