#!/usr/bin/env bash
# Starts or stops the dockerd of the engine that start.sh started, and only it: its
# containerd, the shims and the containers stay. start.sh starts dockerd with it, and
# the engine-restart test (TestE2EEngineRestartDuringApply, through the environment
# run.sh sets) starts it again after killing it.
#   dockerd.sh start          starts dockerd with start.sh's arguments, then waits
#                             (60 s at most) until it answers
#   dockerd.sh stop [SIGNAL]  sends SIGNAL (default TERM) to dockerd and waits until it
#                             is gone (90 s at most)
# dockerd runs in the mount and network namespaces of the engine's containerd (whose
# PID is in /run/$NS/containerd.pid): `ip netns exec` would make a new mount
# namespace, but dockerd must see the cgroup mounts start.sh made there, and runc,
# started by containerd, must see the network namespaces and root filesystems dockerd
# mounts. Runs from the host or from inside the namespace (run.sh). Needs root.
set -euo pipefail
ENGINE_DIR=${ENGINE_DIR:-$HOME/.cache/bottle-apply/engines/docker-29}
NS=${ENGINE_NETNS:-bottle-docker29}
RUN=/run/$NS ROOT=/var/lib/$NS B=$ENGINE_DIR/bin
# TLS_PORT: where the engine listens with TLS, on the namespace's loopback.
TLS_PORT=2376
say() { echo "dockerd.sh: $*" >&2; }
usage() { say "usage: dockerd.sh start | stop [SIGNAL]"; exit 2; }
[ $# -ge 1 ] || usage
if [ "$(id -u)" != 0 ]; then say "needs root"; exit 1; fi

# ours PID: alive, and its command line names this engine's /run directory (a stale
# PID file may name a PID reused since).
ours() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q -- "$RUN/"; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

case $1 in
start)
  [ $# = 1 ] || usage
  cpid=$(pid_of containerd)
  ours "$cpid" || { say "the containerd of $NS is not running; start the engine with hack/engine/start.sh"; exit 1; }
  dpid=$(pid_of dockerd)
  if ours "$dpid"; then say "dockerd of $NS is running already (pid $dpid)"; exit 1; fi
  # In a session of its own, its output in the log (appended: the log of the run that
  # was killed stays above) and none of the caller's descriptors: a test that runs
  # this must not wait for dockerd to close its output.
  echo "dockerd.sh: starting dockerd at $(date -Is)" >>"$RUN/dockerd.log"
  setsid nsenter -t "$cpid" -m -n -- env PATH="$B:$PATH" \
    dockerd --config-file "$RUN/daemon.json" --containerd "$RUN/containerd/containerd.sock" \
    --data-root "$ROOT/docker" --exec-root "$RUN/docker" -H "unix://$RUN/docker.sock" \
    -H "tcp://127.0.0.1:$TLS_PORT" --tlsverify --tlscacert "$RUN/tls/ca.pem" \
    --tlscert "$RUN/tls/server-cert.pem" --tlskey "$RUN/tls/server-key.pem" \
    --pidfile "$RUN/dockerd.pid" --cgroup-parent "/$NS" >>"$RUN/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    DOCKER_HOST="unix://$RUN/docker.sock" docker version >/dev/null 2>&1 && exit 0
    sleep 0.5
  done
  say "dockerd of $NS did not answer in 60 s; its log ends with:"
  tail -n 30 "$RUN/dockerd.log" >&2
  exit 1
  ;;
stop)
  [ $# -le 2 ] || usage
  sig=${2:-TERM}
  dpid=$(pid_of dockerd)
  ours "$dpid" || { say "dockerd of $NS is not running"; exit 0; }
  kill -s "$sig" "$dpid"
  for _ in $(seq 1 450); do
    kill -0 "$dpid" 2>/dev/null || exit 0
    sleep 0.2
  done
  say "dockerd of $NS (pid $dpid) is still running 90 s after SIG$sig"
  exit 1
  ;;
*) usage ;;
esac
