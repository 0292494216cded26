"""The one place that pins the test control plane's components.

Changing a version here changes the cache directory, so the next run builds the new binaries and
keeps the old ones for other checkouts. etcd is not pinned separately: it is built at the version
k8s.io/kubernetes itself requires, the version its own integration tests run against.
"""

KUBERNETES = "v1.36.3"
# kwok v0.8.0 is built against the v0.36 client libraries, the same minor as KUBERNETES.
KWOK = "v0.8.0"
