#!/bin/sh
# The image's HEALTHCHECK (deploy/Dockerfile): GET /healthz on the HTTP address the running
# anyai-server was configured with, wherever that came from (the config file, an --http_listen
# after the image name). It runs the server's own command line again with --print_config, which
# prints the effective config and exits without touching the data, and takes http_listen from it
# (--print_config goes first, so that no "--" in the arguments can turn it into a positional one).
# It reads the config file as it is at check time: a file edited after the start is what it sees.
# A wildcard host (0.0.0.0, [::], none) is asked on loopback.
#
# The server is PID 1 (the ENTRYPOINT's exec form), or a child of an init such as
# `docker run --init`: the arguments before the one naming anyai-server are skipped.
# ANYAI_SERVER_PID names another process (tests/deploy/dockerfile_test.py uses it).
# Exit status: 0 healthy, 1 not (with the reason on stderr, which `docker inspect` shows).
set -eu

pid=${ANYAI_SERVER_PID:-1}
if [ ! -r "/proc/$pid/cmdline" ]; then
  echo "anyai-healthcheck: no process $pid" >&2
  exit 1
fi
cd "/proc/$pid/cwd" 2>/dev/null || true  # so that relative paths mean what they mean to it
# shellcheck disable=SC2016  # $@ is for the inner shell
listen=$(xargs -0 sh -c '
  while [ $# -gt 0 ] && [ "${1##*/}" != anyai-server ]; do shift; done
  [ $# -gt 0 ] || { echo "anyai-healthcheck: the process is not anyai-server" >&2; exit 1; }
  bin=$1; shift
  "$bin" --print_config "$@"' anyai-healthcheck <"/proc/$pid/cmdline" |
  sed -n 's/^http_listen: "\(.*\)"$/\1/p')
if [ -z "$listen" ]; then
  echo "anyai-healthcheck: no http_listen in the effective config" >&2
  exit 1
fi

port=${listen##*:}
host=${listen%:*}
case $host in
  "" | 0.0.0.0) host=127.0.0.1 ;;
  "[::]") host="[::1]" ;;
esac
exec curl -fsS -o /dev/null --max-time 2 "http://$host:$port/healthz"
