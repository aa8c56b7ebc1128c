#!/usr/bin/env bash
# The CI pass against Docker 29 (make test-engine29): builds the engine once (cached in
# ~/.cache/bottle-apply/engines/docker-29), starts it in its own network namespace and
# runs the tests there:
#   1. the containerd image store (Docker 29's default) and iptables: the whole suite,
#      then the engine-restart test alone (it restarts dockerd, as make test does on
#      the system engine under CI);
#   2. overlay2 and nftables: the e2e tests.
# The engine is stopped and removed at the end, whatever happened. Every run goes to
# the end; the exit status says whether any failed. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=hack/engine
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
trap '"$here/stop.sh" || true' EXIT
trap 'exit 130' INT TERM

timings=()
# timed LABEL CMD...: runs CMD, records how long it took and whether it passed.
timed() {
  local label=$1 start=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$(printf '%-48s %4ds  %s' "$label" $((SECONDS - start)) "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  return $rc
}
engine() { # the server line, once the engine answers
  "$here/run.sh" docker version --format 'Server: Docker Engine {{.Server.Version}} (API {{.Server.APIVersion}}, minimum {{.Server.MinAPIVersion}}, {{.Server.Os}}/{{.Server.Arch}})'
  "$here/run.sh" docker info --format '        storage {{.Driver}}{{range .DriverStatus}} {{index . 0}}={{index . 1}}{{end}}, firewall {{with .FirewallBackend}}{{.Driver}}{{end}}, cgroup v{{.CgroupVersion}}'
}

total=$SECONDS
timed "build (cached)" "$here/build.sh"
failed=()

echo "== Docker 29, containerd image store, iptables: go test ./..."
timed "start (containerd store, iptables)" env SNAPSHOTTER=true FIREWALL=iptables "$here/start.sh"
engine
timed "whole suite (containerd store, iptables)" "$here/run.sh" "$GO" test -race -count=1 -timeout 20m ./... ||
  failed+=("the whole suite on the containerd image store with iptables")
# Alone: it kills and restarts this engine's dockerd (hack/engine/dockerd.sh, named by
# the environment run.sh sets), which stops every container on it.
echo "BOTTLE_APPLY_TEST_ENGINE_RESTART=1 $GO test -count=1 -run TestE2EEngineRestartDuringApply ./cmd/bottle-apply"
timed "engine restart (containerd store, iptables)" "$here/run.sh" env BOTTLE_APPLY_TEST_ENGINE_RESTART=1 \
  "$GO" test -count=1 -timeout 10m -run TestE2EEngineRestartDuringApply ./cmd/bottle-apply ||
  failed+=("the engine-restart test on the containerd image store with iptables")
timed "stop" "$here/stop.sh"

echo "== Docker 29, overlay2, nftables: go test -run E2E ./cmd/..."
timed "start (overlay2, nftables)" env SNAPSHOTTER=false FIREWALL=nftables "$here/start.sh"
engine
timed "e2e subset (overlay2, nftables)" "$here/run.sh" "$GO" test -race -count=1 -timeout 10m -run E2E ./cmd/... ||
  failed+=("the e2e tests on overlay2 with nftables")
timed "stop" "$here/stop.sh"

echo "== Docker 29 pass: $((SECONDS - total)) s"
printf '   %s\n' "${timings[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED on Docker 29: %s\n' "${failed[@]}" >&2
  exit 1
fi
