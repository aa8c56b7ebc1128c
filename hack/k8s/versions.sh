# Sourced by the hack/k8s scripts: the versions the cluster is built of, the cache
# they are built into, and where a running cluster lives.
K8S_VERSION=v1.34.4
KUBE_ROUTER_VERSION=v2.1.0
K8S_CACHE=${K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bottle-apply/k8s/$K8S_VERSION-kr${KUBE_ROUTER_VERSION#v}}
# A running cluster: everything under K8S_ROOT (configuration and certificates in etc/,
# sockets and PID files in run/, data in var/, logs in logs/), in the network namespace
# K8S_NETNS, whose node address K8S_NODE_IP the host reaches over the veth k8s-h
# (K8S_HOST_IP).
K8S_ROOT=${K8S_ROOT:-/var/lib/bottle-apply-k8s}
K8S_NETNS=k8s
K8S_NODE=k8s-node
K8S_NODE_IP=10.200.0.10
K8S_HOST_IP=10.200.0.1
K8S_REGISTRY=$K8S_HOST_IP:5000
K8S_POD_CIDR=10.244.0.0/16
K8S_SERVICE_CIDR=10.96.0.0/16
