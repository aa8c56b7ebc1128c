#!/usr/bin/env bash
# Runs a command inside the engine's network namespace with DOCKER_HOST set, e.g.
#   hack/engine/run.sh go test ./...
# Tests must run there: the self-test and the e2e tests probe "the host", and the
# engine's host is the namespace. The engine-restart test (opt-in with
# BOTTLE_APPLY_TEST_ENGINE_RESTART=1) finds this engine's dockerd and how to start it
# again in BOTTLE_APPLY_TEST_DOCKERD_PIDFILE and BOTTLE_APPLY_TEST_DOCKERD_START; the
# remote-engine tests find the engine's own TLS listener (start.sh) in
# BOTTLE_APPLY_TEST_TLS_ENGINE and its client certificates in
# BOTTLE_APPLY_TEST_TLS_CERTS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NS=${ENGINE_NETNS:-bottle-docker29}
if ! ip netns list | grep -qw "$NS"; then
  echo "run.sh: no network namespace $NS; start the engine with hack/engine/start.sh" >&2
  exit 1
fi
start=$(printf 'ENGINE_NETNS=%q ENGINE_DIR=%q %q start' "$NS" "${ENGINE_DIR:-$HOME/.cache/bottle-apply/engines/docker-29}" "$here/dockerd.sh")
exec ip netns exec "$NS" env DOCKER_HOST="unix:///run/$NS/docker.sock" PATH="$PATH:/usr/local/go/bin" \
  BOTTLE_APPLY_TEST_DOCKERD_PIDFILE="/run/$NS/dockerd.pid" BOTTLE_APPLY_TEST_DOCKERD_START="$start" \
  BOTTLE_APPLY_TEST_TLS_ENGINE="tcp://127.0.0.1:2376" BOTTLE_APPLY_TEST_TLS_CERTS="/run/$NS/tls/client" "$@"
