#!/usr/bin/env bash
# gen-certs.sh DIR: a throwaway CA, the apiserver's serving certificate (node IP,
# 127.0.0.1, the kubernetes service's 10.96.0.1 and names), admin and kubelet client
# certificates and the service-account key pair in DIR/pki, and admin.kubeconfig and
# kubelet.kubeconfig in DIR. Does nothing when DIR/pki/ca.crt exists.
set -euo pipefail
dir=${1:?usage: gen-certs.sh DIR}
NODE_IP=${NODE_IP:-10.200.0.10} NODE=${NODE:-k8s-node}
P=$dir/pki
[ -f "$P/ca.crt" ] && exit 0
mkdir -p "$P"
cd "$P"
q() { openssl "$@" >/dev/null 2>&1; }
q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=bottle-apply-k8s-ca
sign() { # name subject [subjectAltName]
  q req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
  else printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"; fi
  q x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 30 -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
sign apiserver /CN=kube-apiserver "IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=kubernetes-admin"
sign kubelet "/O=system:nodes/CN=system:node:$NODE"
q genrsa -out sa.key 2048
q rsa -in sa.key -pubout -out sa.pub
chmod 0600 ./*.key
kubeconfig() { # name user
  cat >"$dir/$1.kubeconfig" <<K
apiVersion: v1
kind: Config
clusters:
- name: bottle-apply-k8s
  cluster: {certificate-authority: "$P/ca.crt", server: "https://$NODE_IP:6443"}
users:
- name: $2
  user: {client-certificate: "$P/$2.crt", client-key: "$P/$2.key"}
contexts:
- name: bottle-apply-k8s
  context: {cluster: bottle-apply-k8s, user: $2}
current-context: bottle-apply-k8s
K
}
kubeconfig admin admin
kubeconfig kubelet kubelet
