#!/usr/bin/env bash
# Builds the demo agent image (FROM scratch plus a static busybox) that
# examples/hello.yaml uses, without any registry.
set -euo pipefail
ref=${1:-bottle-apply/demo-agent:latest}
if docker image inspect "$ref" >/dev/null 2>&1; then
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/workspace"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in sh sleep cat env nc ls echo true false id ip ps; do
  ln -s busybox "$root/bin/$applet"
done
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$ref" >/dev/null
echo "built $ref"
