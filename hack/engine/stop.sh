#!/usr/bin/env bash
# Stops what start.sh started and removes every trace of it: the processes (dockerd,
# containerd, shims, containers, docker-proxy, anything left in the engine's network
# namespace or under its cgroup parent), its cgroups, the network namespace,
# /etc/netns/$NS, /run/$NS and /var/lib/$NS (images and containers included; the build
# in $ENGINE_DIR stays). Safe to run any number of times, after a crash or a start that
# failed half-way. It never touches the system engine: processes are chosen by PID
# file, by the containerd socket of this engine, or by this engine's namespaces and
# cgroups, never by name.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../teardown.sh"
NS=${ENGINE_NETNS:-bottle-docker29}
RUN=/run/$NS ROOT=/var/lib/$NS
say() { echo "stop.sh: $*" >&2; }
if [ "$(id -u)" != 0 ]; then say "needs root"; exit 1; fi
refuse_inside "$NS"

# ours PID: the process names this engine's /run directory on its command line (a
# stale PID file may name a PID reused since).
ours() { alive "$1" && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q -- "$RUN/"; }
# stop_pidfile FILE SECONDS: TERM the process in FILE, KILL it after SECONDS.
stop_pidfile() {
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null)
  if ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    wait_gone "$2" "$pid" || { say "$(basename "$1" .pid) (pid $pid) ignored TERM for $2 s: KILL"; kill -KILL "$pid" 2>/dev/null; wait_gone 5 "$pid"; }
  fi
  rm -f "$1"
}
# The shims of this engine name its containerd socket on their command line.
shims() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "containerd-shim.*$RUN/containerd/containerd.sock" && echo "${p#/proc/}"
  done
}
# leftovers: every process of this engine still alive: in its network namespace
# (containerd, dockerd, the shims, docker-proxy, and any command run.sh started), in
# a cgroup under its cgroup parent (the containers), or a shim of its containerd.
# Never this script nor one of its ancestors.
leftovers() {
  local netino p pid self
  self=$(spared)
  netino=$(stat -L -c %i "/run/netns/$NS" 2>/dev/null)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $self == *" $pid "* ]] && continue
    if in_netns "$pid" "$netino" ||
      grep -qE "^[0-9]+:[^:]*:/$NS(/|$)" "$p/cgroup" 2>/dev/null; then
      echo "$pid"
    fi
  done
  shims
}

# dockerd stops its containers when it gets TERM (no live-restore).
stop_pidfile "$RUN/dockerd.pid" 60
# The shims exit once their containers are gone; give them a moment, then TERM.
s=$(shims)
[ -n "$s" ] && { wait_gone 10 $s || kill -TERM $(shims) 2>/dev/null; }
stop_pidfile "$RUN/containerd.pid" 20
# Whatever is left: TERM, then KILL.
left=$(leftovers)
if [ -n "$left" ]; then
  say "ending what is left of the engine: $(echo $left)"
  kill -TERM $left 2>/dev/null
  wait_gone 5 $left || { kill -KILL $left 2>/dev/null; wait_gone 5 $left; }
  left=$(leftovers)
  [ -n "$left" ] && say "still alive: $(echo $left)"
fi

# Cgroups the containers had under the cgroup parent, deepest first (empty now).
for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done
if ip netns list 2>/dev/null | grep -qw "$NS"; then
  ip netns delete "$NS" || say "could not delete the network namespace $NS"
fi
rm -rf "/etc/netns/$NS"
# Nothing of it should be mounted on the host; if something is, unmount it first.
for m in $(awk -v r="$RUN" -v o="$ROOT" '$5 == r || index($5, r "/") == 1 || $5 == o || index($5, o "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
  umount -l "$m" 2>/dev/null || say "could not unmount $m"
done
rm -rf "$RUN" "$ROOT"
status=0
for d in "$RUN" "$ROOT" "/run/netns/$NS"; do
  [ -e "$d" ] && { say "$d is still there"; status=1; }
done
[ -n "${left:-}" ] && status=1
exit $status
