#!/usr/bin/env bash
# Takes down what up.sh started and removes every trace of it: the processes (control
# plane, kubelet, kube-proxy, kube-router, containerd, its shims, the pods' processes
# and anything else left in the namespace "k8s" or in the kubelet's kubepods cgroups),
# the pods' network namespaces, every mount under $K8S_ROOT, the kubepods cgroups, the
# namespace "k8s", the veth k8s-h and its routes, and $K8S_ROOT itself (configuration,
# certificates, etcd, images, logs; the build cache stays). Safe to run any number of
# times, after a crash or an up.sh that failed half-way. It never touches the system
# engine: processes are chosen by PID file, by this cluster's root on their command
# line, or by this cluster's namespace and cgroups, never by name. Exits non-zero when
# something could not be removed. Needs root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
. "$here/versions.sh"
. "$here/../teardown.sh"
R=$K8S_ROOT NS=$K8S_NETNS
SOCK=$R/run/containerd/containerd.sock
say() { echo "down.sh: $*" >&2; }
if [ "$(id -u)" != 0 ]; then say "needs root"; exit 1; fi
refuse_inside "$NS"
status=0

# ours PID: alive, and its command line names this cluster's root (a stale PID file
# may name a PID reused since).
ours() { alive "$1" && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q -- "$R/"; }
# stop SECONDS NAME...: TERM the processes of the PID files of NAME..., all at once;
# KILL what is left after SECONDS.
stop() {
  local t=$1 n pid pids=()
  shift
  for n in "$@"; do
    pid=$(cat "$R/run/pids/$n.pid" 2>/dev/null)
    ours "$pid" && pids+=("$pid")
    rm -f "$R/run/pids/$n.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null
  wait_gone "$t" "${pids[@]}" || { kill -KILL "${pids[@]}" 2>/dev/null; wait_gone 5 "${pids[@]}"; }
}
# leftovers: every process of this cluster still alive: in its network namespace, in a
# kubepods cgroup (the pods), or naming its root on the command line (the shims name
# the containerd socket). Never this script nor one of its ancestors.
leftovers() {
  local netino p pid self
  self=$(spared)
  netino=$(stat -L -c %i "/run/netns/$NS" 2>/dev/null)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $self == *" $pid "* ]] && continue
    if in_netns "$pid" "$netino" ||
      grep -qE '^[0-9]+:[^:]*:/kubepods(/|$)' "$p/cgroup" 2>/dev/null ||
      tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$R/"; then
      echo "$pid"
    fi
  done
}

# 1. The node agents and the control plane.
stop 10 kube-router kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver

# 2. The pods, through containerd while it answers; their network namespaces (made by
# the CRI plugin as /run/netns/cni-…) are noted first.
podns=()
CTR=(ctr -a "$SOCK" -n k8s.io)
if [ -S "$SOCK" ] && timeout 5 "${CTR[@]}" version >/dev/null 2>&1; then
  for c in $(timeout 10 "${CTR[@]}" containers ls -q 2>/dev/null); do
    podns+=($(timeout 5 "${CTR[@]}" containers info "$c" 2>/dev/null | grep -o '/var/run/netns/cni-[0-9a-f-]*'))
  done
  for t in $(timeout 10 "${CTR[@]}" tasks ls -q 2>/dev/null); do timeout 5 "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  for t in $(timeout 10 "${CTR[@]}" tasks ls -q 2>/dev/null); do timeout 10 "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(timeout 10 "${CTR[@]}" containers ls -q 2>/dev/null); do timeout 10 "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
fi
# Also any pod namespace whose interface has a pod address (one containerd did not
# name, after a crash); judged while the node's namespace, which holds the other end
# of each pod's veth, still exists.
for f in /run/netns/cni-*; do
  [ -e "$f" ] || continue
  ip -n "${f##*/}" -4 -o addr show 2>/dev/null | grep -q ' 10\.244\.' && podns+=("$f")
done

# 3. containerd and etcd, then whatever is left (shims, pods' processes, commands run
# in the namespace): TERM, then KILL.
stop 20 containerd etcd
left=$(leftovers)
if [ -n "$left" ]; then
  kill -TERM $left 2>/dev/null
  wait_gone 5 $left || { kill -KILL $left 2>/dev/null; wait_gone 5 $left; }
  left=$(leftovers)
  [ -n "$left" ] && { say "still alive: $(echo $left)"; status=1; }
fi

# 4. Mounts: the pods' network namespaces, then everything under the root (kubelet
# volumes, sandbox shm, container rootfs, the kubelet's own bind mount), deepest first.
for f in $(printf '%s\n' "${podns[@]}" | sed 's|^/var/run/|/run/|' | sort -u); do
  umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null
  rm -f "$f"
done
for m in $(awk -v r="$R" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
done

# 5. The kubelet's cgroups (cgroupfs driver), deepest first: empty now.
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d "$d" ] && { say "could not remove the cgroup $d"; status=1; }
done

# 6. The network: the namespace (with it the node's end of the veth, so the host's
# end and the routes through it), then the host's end and routes if still there.
if [ -e "/run/netns/$NS" ]; then
  ip netns delete "$NS" 2>/dev/null || { say "could not delete the network namespace $NS"; status=1; }
fi
ip route del "$K8S_POD_CIDR" 2>/dev/null
ip route del "$K8S_SERVICE_CIDR" 2>/dev/null
ip link del k8s-h 2>/dev/null
# The CNI plugins' result cache (libcni's default, not under the root): the pod
# network's and the CRI plugin's loopback results (no other CRI runtime runs here).
rm -f /var/lib/cni/results/bottle-apply-k8s-* /var/lib/cni/results/cni-loopback-* 2>/dev/null
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null

# 7. The root, only once nothing is mounted under it (a pod's hostPath volume must not
# be emptied), and never across file systems.
if awk -v r="$R" '$5 == r || index($5, r "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
  say "something is still mounted under $R: left in place"
  status=1
else
  rm -rf --one-file-system "$R"
fi

for what in "$R" "/run/netns/$NS"; do
  [ -e "$what" ] && { say "$what is still there"; status=1; }
done
ip link show k8s-h >/dev/null 2>&1 && { say "the veth k8s-h is still there"; status=1; }
exit $status
