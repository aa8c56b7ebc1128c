#!/usr/bin/env bash
# Runs a command inside the engine's network namespace with DOCKER_HOST set, e.g.
#   hack/engine/run.sh go test ./...
# Tests must run there: the self-test and the e2e tests probe "the host", and the
# engine's host is the namespace.
set -euo pipefail
NS=${ENGINE_NETNS:-bottle-docker29}
if ! ip netns list | grep -qw "$NS"; then
  echo "run.sh: no network namespace $NS; start the engine with hack/engine/start.sh" >&2
  exit 1
fi
exec ip netns exec "$NS" env DOCKER_HOST="unix:///run/$NS/docker.sock" PATH="$PATH:/usr/local/go/bin" "$@"
