#!/usr/bin/env bash
# Runs the test suite (or, with --bench, the benchmarks) on real PostgreSQL, Redis and
# Docker, which scripts/setup.sh has started.
#
# Several runs can share the machine: WHAGO_TEST_RUN=<name> gives a run its own test
# database, Redis databases, var/ folder, WAHA port range and container label.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${WHAGO_TEST_RUN:-main}
export DJANGO_ENV=test
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://whago:whago@127.0.0.1:5432/whago}
export TEST_DATABASE_NAME=test_whago_${RUN}
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/${WHAGO_TEST_REDIS_DB:-0}}
export CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/$(( ${WHAGO_TEST_REDIS_DB:-0} + 1 ))}
export WHAGO_VAR_DIR=$(pwd)/var/test-${RUN}
export WHAGO_INSTANCE=test-${RUN}
export PYTHONDONTWRITEBYTECODE=1
# The tests' webhook receivers listen on 127.0.0.1 (never allowed outside tests).
export OUTGOING_HTTP_ALLOW_LOOPBACK=${OUTGOING_HTTP_ALLOW_LOOPBACK:-true}
# WAHA containers of this run: the docker runtime with host networking, the simulator
# image, and a host port range of its own (runs share the host's ports).
export WAHA_RUNTIME=${WAHA_RUNTIME:-docker}
export WAHA_NETWORK_MODE=${WAHA_NETWORK_MODE:-host}
export WAHA_IMAGE=${WAHA_IMAGE:-whago/waha-simulator:latest}
# A container per tenant, FREE tenants included, unless a test asks for shared containers
# (tests/waha/test_shared_placement.py): most tests look at one tenant's own container.
export WAHA_FREE_PLACEMENT=${WAHA_FREE_PLACEMENT:-own}
_waha_base=$(( 20000 + ${WHAGO_TEST_REDIS_DB:-0} * 100 ))
export WAHA_PORT_RANGE=${WAHA_PORT_RANGE:-${_waha_base}-$(( _waha_base + 99 ))}

if [ "${1:-}" = "--bench" ]; then
  shift
  shopt -s nullglob
  benches=(tests/bench/bench_*.py)
  if [ ${#benches[@]} -eq 0 ]; then echo "no benchmarks yet"; exit 0; fi
  exec .venv/bin/pytest -s -o python_files="bench_*.py" "${benches[@]}" "$@"
fi
exec .venv/bin/pytest "$@"
