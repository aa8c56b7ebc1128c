#!/usr/bin/env bash
# Makes sure what the demo and the tests need is here: a Docker engine that
# answers (installed from Debian's docker.io and started when missing), a
# static busybox for the local demo and test agent images (busybox-static),
# curl for the credentials test's agent image (and, where npm is there, a
# Node that honours HTTPS_PROXY, cached),
# and ssh with an sshd for the tests that reach the engine over ssh://
# (openssh-client, openssh-server; the tests start their own sshd, on
# 127.0.0.1, and the package's service is not needed).
set -euo pipefail

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
# ldd fails on a static binary, saying so.
static_busybox() {
  local out
  [ -x /bin/busybox ] || return 1
  out=$(ldd /bin/busybox 2>&1 || true)
  [[ $out == *"not a dynamic"* ]]
}
if ! static_busybox; then
  missing+=(busybox-static)
fi
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=(openssh-client)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# Debian's curl goes into the credentials test's agent image.
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: need root to install ${missing[*]} (apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ -n "${DOCKER_HOST:-}" ]; then
    echo "ensure-deps: DOCKER_HOST=$DOCKER_HOST does not answer" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: no Docker engine answers; start one (sudo dockerd) or set DOCKER_HOST" >&2
    exit 1
  fi
  echo "ensure-deps: starting dockerd (log: /var/log/bottle-apply-dockerd.log)" >&2
  nohup dockerd >/var/log/bottle-apply-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "ensure-deps: dockerd did not answer within 60s; last log lines:" >&2
    tail -n 20 /var/log/bottle-apply-dockerd.log >&2 || true
    exit 1
  fi
fi

# The credentials test runs a Node client in the agent where one that
# honours HTTPS_PROXY (22.21 and later; Debian bookworm's is 18) is at
# hand: the npm registry's build, cached. Without npm it tests curl and Go.
node_dir="${XDG_CACHE_HOME:-$HOME/.cache}/bottle-apply/node"
case "$(uname -m)" in x86_64) node_arch=x64 ;; aarch64) node_arch=arm64 ;; *) node_arch= ;; esac
if [ -n "$node_arch" ] && [ ! -x "$node_dir/bin/node" ] && command -v npm >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack -q "node-linux-$node_arch@22.23.5" >/dev/null 2>&1 &&
      mkdir -p "$node_dir" && tar xzf node-linux-*.tgz -C "$node_dir" --strip-components=1 package/bin/node); then
    echo "ensure-deps: cached Node $("$node_dir/bin/node" --version) for the credentials test" >&2
  else
    echo "ensure-deps: no Node 22 for the credentials test (npm pack node-linux-$node_arch failed): it tries curl and Go only" >&2
  fi
  rm -rf "$tmp"
fi
