#!/usr/bin/env bash
# Starts a single-node Kubernetes (what build.sh built) inside the network namespace
# "k8s" and waits until the node is Ready:
#   host  k8s-h 10.200.0.1/24  <-veth->  k8s-n 10.200.0.10/24  netns k8s (the node)
# The apiserver is https://10.200.0.10:6443 (kubeconfig: $K8S_ROOT/etc/admin.kubeconfig,
# or see env.sh); the host routes the pods' 10.244.0.0/16 and the services'
# 10.96.0.0/16 through the node. Everything lives under $K8S_ROOT
# (/var/lib/bottle-apply-k8s) and its own containerd, apart from the system engine's;
# the namespace's default route is a blackhole, so nothing in the cluster reaches
# beyond this machine. down.sh removes it all. A previous run that crashed or was not
# taken down is taken down first. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
. "$here/versions.sh"
C=$K8S_CACHE B=$K8S_CACHE/bin R=$K8S_ROOT
E=$R/etc L=$R/logs P=$R/etc/pki
say() { echo "up.sh: $*" >&2; }
if [ "$(id -u)" != 0 ]; then say "needs root (network namespace, mounts, cgroups)"; exit 1; fi
for f in "$B"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl,kube-router} \
  "$C/etcd/usr/bin/etcd" "$C/images/pause.tar" "$C/images/busybox.tar"; do
  [ -e "$f" ] || { say "no $f; run hack/k8s/build.sh"; exit 1; }
done
T0=$(date +%s%N)
ts() { printf 'up.sh: [%5.1fs] %s\n' "$(echo "($(date +%s%N) - $T0) / 1000000000" | bc -l)" "$*" >&2; }

# Whatever an earlier run left (crashed, or never taken down) goes first.
if [ -e "$R" ] || [ -e "/run/netns/$K8S_NETNS" ] || ip link show k8s-h >/dev/null 2>&1; then
  say "an earlier cluster is still here: taking it down first"
  "$here/down.sh" >&2 || { say "down.sh could not remove it all"; exit 1; }
fi

mkdir -p "$R/run/pids" "$L" "$R/var/kubelet" "$R/var/cni/networks" "$R/var/log/pods" "$R/var/etcd" "$R/var/opt" \
  "$E/cni/net.d" "$E/certs.d/$K8S_REGISTRY"
chmod 0700 "$R"
sub() { sed "s|@ROOT@|$R|g" "$1"; }
sub "$here/etc/containerd.toml" >"$E/containerd.toml"
sub "$here/etc/kubelet.yaml" >"$E/kubelet.yaml"
sub "$here/etc/kube-proxy.yaml" >"$E/kube-proxy.yaml"
sub "$here/etc/cni/10-bridge.conflist" >"$E/cni/net.d/10-bridge.conflist"
sub "$here/etc/registry-hosts.toml" >"$E/certs.d/$K8S_REGISTRY/hosts.toml"
cp "$here/etc/resolv.conf" "$E/resolv.conf"
NODE_IP=$K8S_NODE_IP NODE=$K8S_NODE "$here/gen-certs.sh" "$E"
export KUBECONFIG=$E/admin.kubeconfig
ts "configuration and certificates in $R"

# --- the network namespace: the node's end of a veth, a blackhole default route ---
NS=$K8S_NETNS
ip netns add "$NS"
ip link add k8s-h type veth peer name k8s-n netns "$NS"
ip addr add "$K8S_HOST_IP/24" dev k8s-h
ip link set k8s-h up
ip -n "$NS" link set lo up
ip -n "$NS" addr add "$K8S_NODE_IP/24" dev k8s-n
ip -n "$NS" link set k8s-n up
# No way out beyond the host's end of the veth (this kernel has no dummy link type to
# hang a default route on: a blackhole stands in for it).
ip -n "$NS" route add blackhole default
ip route add "$K8S_POD_CIDR" via "$K8S_NODE_IP" dev k8s-h
ip route add "$K8S_SERVICE_CIDR" via "$K8S_NODE_IP" dev k8s-h
NSX=(nsenter "--net=/run/netns/$NS" --)
# Per-namespace settings only (the host's are left alone).
"${NSX[@]}" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.ipv4.conf.all.route_localnet=1
ts "netns $NS: node $K8S_NODE_IP, host $K8S_HOST_IP"

# start NAME CMD...: runs CMD in the namespace, in a session of its own (an interrupt
# of the caller does not reach it: down.sh stops it), its output in logs/NAME.log.
start() {
  local n=$1
  shift
  setsid "${NSX[@]}" "$@" >>"$L/$n.log" 2>&1 </dev/null &
  echo $! >"$R/run/pids/$n.pid"
}
# waitfor WHAT SECONDS LOG CMD...: until CMD succeeds; on timeout the log's end.
waitfor() {
  local what=$1 t=$2 log=$3 i
  shift 3
  for ((i = 0; i < t * 5; i++)); do
    "$@" >/dev/null 2>&1 && { ts "$what"; return 0; }
    sleep 0.2
  done
  say "timed out after $t s waiting for $what; the end of $L/$log.log:"
  tail -n 30 "$L/$log.log" >&2 || true
  say "take it down with hack/k8s/down.sh"
  exit 1
}

start etcd "$C/etcd/usr/bin/etcd" --name default --data-dir "$R/var/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 --listen-metrics-urls '' --quota-backend-bytes 2147483648
start containerd containerd --config "$E/containerd.toml"
SOCK=$R/run/containerd/containerd.sock
waitfor "containerd answers" 30 containerd ctr -a "$SOCK" version
CTR=(ctr -a "$SOCK" -n k8s.io)
"${CTR[@]}" images import "$C/images/pause.tar" >/dev/null
"${CTR[@]}" images import "$C/images/busybox.tar" >/dev/null
ts "images k8s.local/pause:3.10 and k8s.local/busybox:1.35 imported"
waitfor "etcd healthy" 30 etcd "${NSX[@]}" "$C/etcd/usr/bin/etcdctl" --endpoints http://127.0.0.1:2379 endpoint health

start kube-apiserver "$B/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$K8S_NODE_IP" \
  --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range="$K8S_SERVICE_CIDR" --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction --allow-privileged=true --profiling=false --v=1
waitfor "kube-apiserver ready" 120 kube-apiserver "$B/kubectl" get --raw /readyz
start kube-controller-manager "$B/kube-controller-manager" --kubeconfig="$E/admin.kubeconfig" \
  --authentication-kubeconfig="$E/admin.kubeconfig" --authorization-kubeconfig="$E/admin.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr="$K8S_POD_CIDR" --node-cidr-mask-size=24 \
  --service-cluster-ip-range="$K8S_SERVICE_CIDR" --profiling=false --v=1
start kube-scheduler "$B/kube-scheduler" --kubeconfig="$E/admin.kubeconfig" \
  --authentication-kubeconfig="$E/admin.kubeconfig" --authorization-kubeconfig="$E/admin.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
# KUBELET_KERNEL_TUNABLES=warn (kubelet-no-host-sysctls.patch): the kubelet only warns
# about vm.overcommit_memory, kernel.panic and kernel.panic_on_oops instead of setting
# them for the whole machine.
start kubelet env KUBELET_KERNEL_TUNABLES=warn "$B/kubelet" --config="$E/kubelet.yaml" \
  --kubeconfig="$E/kubelet.kubeconfig" --root-dir="$R/var/kubelet" --cert-dir="$R/var/kubelet/pki" \
  --hostname-override="$K8S_NODE" --node-ip="$K8S_NODE_IP" --v=1
start kube-proxy "$B/kube-proxy" --config="$E/kube-proxy.yaml" --v=1
waitfor "node registered" 120 kubelet "$B/kubectl" get node "$K8S_NODE"
# kube-router: NetworkPolicy only (no routing, no service proxy).
start kube-router "$B/kube-router" --kubeconfig="$E/admin.kubeconfig" --hostname-override="$K8S_NODE" \
  --run-firewall=true --run-router=false --run-service-proxy=false --enable-ipv6=false \
  --metrics-port=0 --health-port=20244 --v=1
waitfor "node Ready" 180 kubelet "$B/kubectl" wait --for=condition=Ready "node/$K8S_NODE" --timeout=1s
waitfor "default service account" 60 kube-controller-manager "$B/kubectl" -n default get serviceaccount default
waitfor "kube-router healthy" 60 kube-router "${NSX[@]}" curl -sf http://127.0.0.1:20244/healthz
ts "cluster ready: KUBECONFIG=$E/admin.kubeconfig"
