#!/usr/bin/env bash
# Builds what hack/k8s/up.sh runs, once, into a cache keyed on the versions:
#   $K8S_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/bottle-apply/k8s/v1.34.4-kr2.1.0)
#     bin/     kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (patched:
#              KUBELET_KERNEL_TUNABLES=warn leaves the host's sysctls alone), kube-proxy,
#              kubectl (all Kubernetes v1.34.4, from the k8s.io/kubernetes module) and
#              kube-router v2.1.0 (NetworkPolicy only)
#     etcd/    Debian's etcd-server and etcd-client unpacked, not installed (installing
#              would start a system etcd)
#     images/  pause.tar (k8s.local/pause:3.10) and busybox.tar (k8s.local/busybox:1.35),
#              `docker save` archives that up.sh imports into the cluster's containerd
# Also installs the Debian packages the cluster needs (apt-get update only when one is
# missing); starts no service. Cold: about 6 minutes on 2 cores; with the cache present
# it checks and exits in a second or two. The Go builds run with GOFLAGS=-mod=mod in a
# scratch directory under the cache, never in the project's module. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/local/go/bin
. "$here/versions.sh"
C=$K8S_CACHE
say() { echo "build.sh: $*" >&2; }
if [ "$(id -u)" != 0 ]; then say "needs root (apt)"; exit 1; fi
t0=$SECONDS

# --- Debian packages (no service is started: containerd's unit is not enabled here,
# and up.sh runs its own containerd) ---
PKGS=(containerd runc containernetworking-plugins ipset conntrack iptables busybox-static gcc libc6-dev openssl jq bc curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
updated=
apt_update() { [ -n "$updated" ] || { apt-get update -qq; updated=1; }; }
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_update
  # policy-rc.d 101: no package may start its service while we install (containerd's
  # postinst would otherwise start a system containerd beside docker's).
  prc=/usr/sbin/policy-rc.d; own_prc=
  if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' >$prc; chmod +x $prc; own_prc=1; fi
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { [ -n "$own_prc" ] && rm -f $prc; exit 1; }
  [ -n "$own_prc" ] && rm -f $prc
fi

mkdir -p "$C/bin" "$C/images"

# --- etcd: Debian's, unpacked only ---
if [ ! -x "$C/etcd/usr/bin/etcd" ] || [ ! -x "$C/etcd/usr/bin/etcdctl" ]; then
  say "unpacking Debian's etcd into $C/etcd"
  d=$(mktemp -d "$C/debs.XXXXXX")
  (cd "$d" && { apt-get download etcd-server etcd-client >/dev/null 2>&1 ||
    { apt_update && apt-get download etcd-server etcd-client >/dev/null; }; })
  rm -rf "$C/etcd.new"
  for f in "$d"/*.deb; do dpkg -x "$f" "$C/etcd.new"; done
  rm -rf "$C/etcd" "$d"
  mv "$C/etcd.new" "$C/etcd"
fi

K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
need_k8s=
for b in "${K8S_BINS[@]}"; do [ -x "$C/bin/$b" ] || need_k8s=1; done
need_images=
[ -f "$C/images/pause.tar" ] && [ -f "$C/images/busybox.tar" ] || need_images=1

# modsrc MODULE@VERSION DIR: a writable copy of a module's source, fetched through the
# module proxy from a scratch module under the cache.
modsrc() {
  local mv=$1 dst=$2 dir
  mkdir -p "$C/scratch"
  [ -f "$C/scratch/go.mod" ] || (cd "$C/scratch" && GOWORK=off go mod init scratch >/dev/null 2>&1)
  dir=$(cd "$C/scratch" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$mv" | jq -r .Dir)
  rm -rf "$dst"
  cp -r "$dir" "$dst"
  chmod -R u+w "$dst"
}
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
SRC=$C/scratch/src
if [ -n "$need_k8s" ] || [ -n "$need_images" ]; then
  mkdir -p "$SRC"
  if [ ! -f "$SRC/kubernetes/.prepared" ]; then
    say "fetching k8s.io/kubernetes@$K8S_VERSION"
    modsrc "k8s.io/kubernetes@$K8S_VERSION" "$SRC/kubernetes"
    (cd "$SRC/kubernetes" &&
      # The module zip has no staging/ nor vendor/: its ./staging replaces point at the
      # published k8s.io/X v0.N.P of the same release instead.
      rm -rf go.work go.work.sum vendor &&
      sed -i -E "s#(k8s.io/[a-z-]+) => ./staging/src/k8s.io/[a-z-]+#\1 => \1 v0.${K8S_VERSION#v1.}#" go.mod &&
      patch -s -p1 <"$here/kubelet-no-host-sysctls.patch" &&
      touch .prepared)
  fi
fi
if [ -n "$need_k8s" ]; then
  say "building Kubernetes $K8S_VERSION (10 minutes or more on 2 cores when the Go build cache is cold)"
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  LD="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LD="$LD -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.gitCommit=modulezip"
  done
  targets=()
  for b in "${K8S_BINS[@]}"; do targets+=("./cmd/$b"); done
  (cd "$SRC/kubernetes" && go build -trimpath -ldflags "$LD" -o "$C/bin/" "${targets[@]}")
fi
if [ -n "$need_images" ]; then
  say "building the pause and busybox images"
  w=$C/scratch/images
  rm -rf "$w" && mkdir -p "$w/rootfs-pause" "$w/rootfs-bb/bin" "$w/rootfs-bb/tmp" "$w/rootfs-bb/etc" "$w/rootfs-bb/www"
  gcc -Os -static -DVERSION=3.10 -o "$w/rootfs-pause/pause" "$SRC/kubernetes/build/pause/linux/pause.c"
  strip "$w/rootfs-pause/pause"
  "$here/mkimage.sh" "$w/rootfs-pause" k8s.local/pause:3.10 "$C/images/pause.tar.new" '["/pause"]'
  cp /bin/busybox "$w/rootfs-bb/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$w/rootfs-bb/bin/$a"; done
  chmod 1777 "$w/rootfs-bb/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$w/rootfs-bb/etc/passwd"
  echo 'root:x:0:' >"$w/rootfs-bb/etc/group"
  echo hello-from-server >"$w/rootfs-bb/www/index.html"
  "$here/mkimage.sh" "$w/rootfs-bb" k8s.local/busybox:1.35 "$C/images/busybox.tar.new" '["/bin/sh"]'
  mv "$C/images/pause.tar.new" "$C/images/pause.tar"
  mv "$C/images/busybox.tar.new" "$C/images/busybox.tar"
  rm -rf "$w"
fi
if [ ! -x "$C/bin/kube-router" ]; then
  say "building kube-router $KUBE_ROUTER_VERSION"
  modsrc "github.com/cloudnativelabs/kube-router/v2@$KUBE_ROUTER_VERSION" "$SRC/kube-router"
  (cd "$SRC/kube-router" && go build -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    -o "$C/bin/kube-router" ./cmd/kube-router)
fi
# The sources are only needed to build (the Go build cache keeps the rest).
rm -rf "$C/scratch"
[ $((SECONDS - t0)) -gt 5 ] && say "done in $((SECONDS - t0)) s: $C ($(du -sh "$C" | cut -f1))"
exit 0
