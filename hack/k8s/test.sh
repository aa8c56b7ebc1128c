#!/usr/bin/env bash
# The CI pass against a real Kubernetes (make test-kubernetes): builds the cluster once
# (build.sh, cached in ~/.cache/bottle-apply/k8s/VERSIONS), starts it (up.sh), runs
# the tests whose names say Kube with the environment env.sh prints and
# BOTTLE_APPLY_TEST_KUBERNETES=1 (a test that finds no cluster fails instead of
# skipping), and takes the cluster down (down.sh) whatever happened, on an interrupt
# too. Prints how long each step took; exits non-zero when any step failed. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=hack/k8s
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
. "$here/versions.sh"

timings=()
# timed LABEL CMD...: runs CMD, records how long it took and whether it passed.
timed() {
  local label=$1 start=$SECONDS rc=0
  shift
  "$@" || rc=$?
  timings+=("$(printf '%-32s %4ds  %s' "$label" $((SECONDS - start)) "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  return $rc
}
total=$SECONDS
report() {
  echo "== Kubernetes pass ($K8S_VERSION, kube-router $KUBE_ROUTER_VERSION): $((SECONDS - total)) s"
  printf '   %s\n' "${timings[@]}"
}
# logs: the end of each component's log, when something failed.
logs() {
  local f
  for f in "$K8S_ROOT"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "--- the end of $f"
    tail -n 15 "$f"
  done
}
down_done=
finish() {
  local rc=$?
  if [ -z "$down_done" ]; then
    [ $rc = 0 ] || logs
    timed "down" "$here/down.sh" || rc=1
    report
  fi
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

timed "build (cached)" "$here/build.sh"
timed "up" "$here/up.sh"
# The environment of env.sh, for the tests.
while IFS= read -r kv; do export "$kv"; done < <("$here/env.sh")
export BOTTLE_APPLY_TEST_KUBERNETES=1
echo "$GO test -race -count=1 -timeout 15m -run Kube ./..."
rc=0
timed "go test -run Kube ./..." "$GO" test -race -count=1 -timeout 15m -run 'Kube' ./... || rc=$?
[ $rc = 0 ] || logs
down_done=1
timed "down" "$here/down.sh" || rc=1
report
exit $rc
