# Sourced by hack/engine/stop.sh and hack/k8s/down.sh, which end the processes of an
# engine or a cluster that they chose by PID file, namespace, cgroup or command line,
# never by name. The caller defines say().

# refuse_inside NS: exits when this shell runs inside the network namespace NS, which
# the caller is about to delete.
refuse_inside() {
  if [ -e "/run/netns/$1" ] && [ "$(stat -L -c %i /proc/self/ns/net)" = "$(stat -L -c %i "/run/netns/$1" 2>/dev/null)" ]; then
    say "runs inside the namespace $1, which it is about to delete; run it from the host"
    exit 1
  fi
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# wait_gone SECONDS PID...: true once none of the PIDs is alive.
wait_gone() {
  local n=$(($1 * 5)) p left
  shift
  for _ in $(seq 1 "$n"); do
    left=
    for p in "$@"; do alive "$p" && left=1; done
    [ -z "$left" ] && return 0
    sleep 0.2
  done
  return 1
}

# spared: this shell's PID and its ancestors', each between spaces, which a teardown
# never ends.
spared() {
  local q=$$ s=" "
  while [ -n "$q" ] && [ "$q" != 0 ]; do s+="$q "; q=$(awk '/^PPid:/ {print $2}' "/proc/$q/status" 2>/dev/null); done
  echo "$s"
}

# in_netns PID INODE: the process PID is in the network namespace whose inode is INODE
# (none when INODE is empty).
in_netns() { [ -n "$2" ] && [ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$2" ]; }
