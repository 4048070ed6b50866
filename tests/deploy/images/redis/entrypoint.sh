#!/bin/sh
# As the official image: redis-server runs as redis, listens on every interface of the
# container without protected mode, and keeps its files in /data.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --bind '* -::*' --protected-mode no "$@"
  fi
  exec redis-server --bind '* -::*' --protected-mode no "$@"
fi
exec "$@"
