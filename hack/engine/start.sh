#!/usr/bin/env bash
# Starts the engine that build.sh made (containerd and dockerd 29) inside a network
# namespace of its own, beside the system engine and touching none of it: iptables or
# nftables rules, bridges and routes are per namespace; sockets, state and data live in
# /run/$NS and /var/lib/$NS. Prints the DOCKER_HOST; run clients with run.sh, stop
# with stop.sh (which removes all of it).
#   SNAPSHOTTER=true (default: the containerd image store, Docker 29's default) | false (overlay2)
#   FIREWALL=iptables (default) | nftables
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ENGINE_DIR=${ENGINE_DIR:-$HOME/.cache/bottle-apply/engines/docker-29}
NS=${ENGINE_NETNS:-bottle-docker29}
RUN=/run/$NS ROOT=/var/lib/$NS B=$ENGINE_DIR/bin
SNAPSHOTTER=${SNAPSHOTTER:-true} FIREWALL=${FIREWALL:-iptables}
case $SNAPSHOTTER in true | false) ;; *) echo "start.sh: SNAPSHOTTER=$SNAPSHOTTER: want true or false" >&2; exit 2 ;; esac
case $FIREWALL in iptables | nftables) ;; *) echo "start.sh: FIREWALL=$FIREWALL: want iptables or nftables" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then echo "start.sh: needs root (network namespaces, mounts)" >&2; exit 1; fi
for f in dockerd docker-proxy containerd containerd-shim-runc-v2 runc; do
  [ -x "$B/$f" ] || { echo "start.sh: no $B/$f; run hack/engine/build.sh" >&2; exit 1; }
done
for p in dockerd containerd; do
  if [ -f "$RUN/$p.pid" ] && kill -0 "$(cat "$RUN/$p.pid")" 2>/dev/null; then
    echo "start.sh: $p of $NS is running (pid $(cat "$RUN/$p.pid")); stop it first with hack/engine/stop.sh" >&2
    exit 1
  fi
done
# Whatever a crashed run left (namespace, state, processes) goes first.
"$here/stop.sh" >/dev/null

mkdir -p "$RUN" "$ROOT"
sed "s|@ROOT@|$ROOT|g; s|@RUN@|$RUN|g" "$here/containerd-config.toml" >"$RUN/containerd.toml"
printf '{"features": {"containerd-snapshotter": %s}, "firewall-backend": "%s"}\n' "$SNAPSHOTTER" "$FIREWALL" >"$RUN/daemon.json"
# The engine also listens with TLS on the namespace's loopback, wanting a client
# certificate, so that the tests reach a real TLS-listening engine (run.sh names it to
# them): a throwaway CA, a server certificate for 127.0.0.1, a client certificate.
"$here/tls.sh" "$RUN/tls"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# The namespace has no way out. Its resolv.conf names its own loopback, where nothing
# listens, so that lookups the engine forwards fail at once instead of timing out.
mkdir -p "/etc/netns/$NS"
echo "nameserver 127.0.0.1" >"/etc/netns/$NS/resolv.conf"
# `ip netns exec` mounts a fresh /sys without cgroups: mount the host's hierarchies
# again, with the host's options. containerd and dockerd share that one mount
# namespace (dockerd's netns files and rootfs mounts must be visible to runc), which
# ends with them.
CG=$(awk '$2 ~ "^/sys/fs/cgroup" {print $3, $2, $4}' /proc/1/mounts)
ip netns exec "$NS" /bin/bash -c "
  set -e; export PATH=$B:\$PATH
  echo '$CG' | while read -r type dir opts; do
    [ -n \"\$type\" ] || continue
    if [ \$type = tmpfs ]; then mount -t tmpfs -o \$opts tmpfs \$dir; else mkdir -p \$dir; mount -t \$type -o \$opts \$type \$dir; fi
  done
  nohup containerd --config $RUN/containerd.toml >$RUN/containerd.log 2>&1 </dev/null & echo \$! >$RUN/containerd.pid
  for i in \$(seq 1 100); do [ -S $RUN/containerd/containerd.sock ] && break; sleep 0.1; done
  [ -S $RUN/containerd/containerd.sock ] || { echo 'containerd did not make its socket in 10 s:' >&2; tail -n 20 $RUN/containerd.log >&2; exit 1; }
"
# dockerd joins containerd's namespaces (dockerd.sh, which the engine-restart test
# uses too, to start it again the same way); it waits until dockerd answers.
"$here/dockerd.sh" start
echo "DOCKER_HOST=unix://$RUN/docker.sock (netns $NS; containerd-snapshotter=$SNAPSHOTTER, firewall-backend=$FIREWALL)"
