#!/usr/bin/env bash
# `make run`: WHAGO on embedded defaults — SQLite, the filesystem Celery broker, a real
# worker and beat, the development server on http://127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONUNBUFFERED=1

$PY manage.py migrate --no-input -v0
$PY manage.py compilemessages --ignore=.venv -v0 2>/dev/null || true
mkdir -p var/log
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$PY -m celery -A whago worker --pool=threads --concurrency=8 --loglevel=INFO >var/log/worker.log 2>&1 &
pids+=($!)
$PY -m celery -A whago beat --loglevel=INFO --pidfile= >var/log/beat.log 2>&1 &
pids+=($!)
$PY manage.py bootstrap_demo
echo "  Logs: var/log/worker.log, var/log/beat.log. Stop with Ctrl-C."
$PY manage.py runserver 127.0.0.1:8000 --noreload &
pids+=($!)
wait -n "${pids[@]}"
