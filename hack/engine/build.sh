#!/usr/bin/env bash
# Builds a current Docker Engine from Go modules: dockerd 29.8 (moby v2.0.0-beta.24),
# containerd v2.3.5 and runc v1.5.3, into $ENGINE_DIR/bin (default
# ~/.cache/bottle-apply/engines/docker-29). About 4 minutes on 2 cores, once; a run
# with the binaries present does nothing, so CI keeps that directory between runs.
# Needs Go (the module proxy) and, as root, apt (libseccomp-dev for runc, tini).
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
ENGINE_DIR=${ENGINE_DIR:-$HOME/.cache/bottle-apply/engines/docker-29}
B=$ENGINE_DIR/bin
[ -x "$B/dockerd" ] && [ -x "$B/docker-proxy" ] && [ -x "$B/containerd" ] &&
  [ -x "$B/containerd-shim-runc-v2" ] && [ -x "$B/runc" ] && exit 0
echo "build.sh: building Docker 29 into $B (once, about 4 minutes)" >&2
mkdir -p "$B" "$ENGINE_DIR/src"
dpkg -s libseccomp-dev >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev pkg-config >/dev/null; }
command -v tini-static >/dev/null 2>&1 || command -v tini >/dev/null 2>&1 ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tini >/dev/null || true
src() { # name module@version: a writable copy of the module's source in $ENGINE_DIR/src/name
  local name=$1 mv=$2 d
  d=$(mktemp -d)
  (cd "$d" && go mod init scratch >/dev/null 2>&1 && go mod download -json "$mv") |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p' >"$d/dir"
  rm -rf "${ENGINE_DIR:?}/src/$name"
  cp -r "$(cat "$d/dir")" "$ENGINE_DIR/src/$name"
  chmod -R u+w "$ENGINE_DIR/src/$name"
  rm -rf "$d"
}
src moby github.com/moby/moby/v2@v2.0.0-beta.24
src containerd github.com/containerd/containerd/v2@v2.3.5
src runc github.com/opencontainers/runc@v1.5.3
(cd "$ENGINE_DIR/src/moby" &&
  go build -p 2 -tags "netgo osusergo exclude_graphdriver_btrfs nri_no_wasm" \
    -ldflags "-w -X github.com/moby/moby/v2/dockerversion.Version=29.8.0 -X github.com/moby/moby/v2/dockerversion.GitCommit=v2.0.0-beta.24" \
    -o "$B/dockerd" ./cmd/dockerd &&
  go build -p 2 -tags "netgo osusergo" -ldflags -w -o "$B/docker-proxy" ./cmd/docker-proxy)
LD="-X github.com/containerd/containerd/v2/version.Version=v2.3.5"
(cd "$ENGINE_DIR/src/containerd" &&
  go build -p 2 -tags "no_btrfs urfave_cli_no_docs" -ldflags "$LD" -o "$B/containerd" ./cmd/containerd &&
  CGO_ENABLED=0 go build -p 2 -tags "no_btrfs urfave_cli_no_docs no_grpc" -ldflags "$LD" -o "$B/containerd-shim-runc-v2" ./cmd/containerd-shim-runc-v2)
(cd "$ENGINE_DIR/src/runc" && go build -p 2 -trimpath -buildmode=pie -tags "seccomp urfave_cli_no_docs" -o "$B/runc" .)
ti=$(command -v tini-static || command -v tini || true)
[ -n "$ti" ] && ln -sf "$ti" "$B/docker-init"
rm -rf "${ENGINE_DIR:?}/src"
"$B/dockerd" --version
"$B/containerd" --version
"$B/runc" --version | sed -n 1p # sed reads it all: head would leave runc a SIGPIPE, and pipefail fail the build
