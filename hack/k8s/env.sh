#!/usr/bin/env bash
# The environment the Kubernetes tests read (internal/testenv.Kube). Run, it prints
# it, one NAME=value a line (`export $(hack/k8s/env.sh)`); sourced, it exports it.
#   BOTTLE_APPLY_TEST_KUBECONFIG    the admin kubeconfig (https://10.200.0.10:6443)
#   BOTTLE_APPLY_TEST_K8S_LOAD      load-image.sh: docker images into the cluster
#   BOTTLE_APPLY_TEST_K8S_REGISTRY  where a test may start a plain-HTTP registry that
#                                   the cluster pulls from (the host's end of the veth)
#   BOTTLE_APPLY_TEST_K8S_NODE_IP   the node's address (in the namespace)
#   BOTTLE_APPLY_TEST_K8S_NETNS     the node's network namespace (/run/netns/NAME)
#   BOTTLE_APPLY_TEST_K8S_BIN       kubectl and the other binaries of the cluster
_k8s_env() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  . "$here/versions.sh"
  cat <<E
BOTTLE_APPLY_TEST_KUBECONFIG=$K8S_ROOT/etc/admin.kubeconfig
BOTTLE_APPLY_TEST_K8S_LOAD=$here/load-image.sh
BOTTLE_APPLY_TEST_K8S_REGISTRY=$K8S_REGISTRY
BOTTLE_APPLY_TEST_K8S_NODE_IP=$K8S_NODE_IP
BOTTLE_APPLY_TEST_K8S_NETNS=$K8S_NETNS
BOTTLE_APPLY_TEST_K8S_BIN=$K8S_CACHE/bin
E
}
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  while IFS= read -r _l; do export "$_l"; done < <(_k8s_env)
  unset _l
  unset -f _k8s_env
else
  _k8s_env
fi
