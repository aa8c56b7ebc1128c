#!/usr/bin/env bash
# Makes sure what the demo and the tests need is here: a Docker engine that
# answers (installed from Debian's docker.io and started when missing), a
# static busybox for the local demo and test agent images (busybox-static),
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
