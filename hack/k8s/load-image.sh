#!/usr/bin/env bash
# load-image.sh REF...: copies images from the system Docker engine (docker save) into
# the test cluster's containerd (namespace k8s.io, where the kubelet looks), so that
# pods use locally built images with imagePullPolicy IfNotPresent or Never. Needs root
# (the containerd socket) and a running cluster (up.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/sbin:/usr/bin
. "$here/versions.sh"
SOCK=$K8S_ROOT/run/containerd/containerd.sock
[ $# -gt 0 ] || { echo "usage: load-image.sh REF..." >&2; exit 2; }
[ -S "$SOCK" ] || { echo "load-image.sh: no cluster containerd at $SOCK; start it with hack/k8s/up.sh" >&2; exit 1; }
# One archive for all the images: layers they share go once.
docker save "$@" | ctr -a "$SOCK" -n k8s.io images import - >/dev/null
for ref in "$@"; do
  # docker names an image without a registry docker.io/...; containerd keeps that name.
  first=${ref%%/*}
  if [ "$first" = "$ref" ]; then full=docker.io/library/$ref
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then full=$ref
  else full=docker.io/$ref; fi
  case ${full##*/} in *:* | *@*) ;; *) full=$full:latest ;; esac
  ctr -a "$SOCK" -n k8s.io images ls -q "name==$full" | grep -q . ||
    { echo "load-image.sh: $ref is not in the cluster after the import" >&2; exit 1; }
done
