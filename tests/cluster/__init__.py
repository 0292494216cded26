"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager and kwok,
built from source with `go build` (no Docker engine here) and started on loopback ports."""
