"""Names and labels of everything the operator creates, derived from the custom resource.

Children are named from their parent, never generated, so that a retry or a restarted operator
finds the very same object instead of creating a second one.
"""

from __future__ import annotations

GROUP = "kubeformer.dev"
VERSION = "v1alpha1"
PLURAL = "optimizedtransformers"
KIND = "OptimizedTransformer"

MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR = "kubeformer"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
TRANSFORMER = f"{GROUP}/transformer"
CACHE_KEY = f"{GROUP}/cache-key"
FINALIZER = f"{GROUP}/artifacts"

# The label selector of every child kind the operator watches.
OWNED = {MANAGED_BY: OPERATOR}


def build_job_name(name: str, key: str) -> str:
    return f"{name}-build-{key[:10]}"


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubeformer",
        INSTANCE: name,
        COMPONENT: component,
        MANAGED_BY: OPERATOR,
        TRANSFORMER: name,
    }


def selector(name: str) -> dict[str, str]:
    """The serving pods of one transformer; stable across rollouts (never includes the cache key)."""
    return {TRANSFORMER: name, COMPONENT: "triton"}


def artifact_prefix(storage_uri: str, namespace: str, name: str) -> str:
    """Every artifact of one object; deleteOnRemoval removes this prefix."""
    return f"{storage_uri.rstrip('/')}/{namespace}/{name}"


def artifact_uri(storage_uri: str, namespace: str, name: str, key: str) -> str:
    return f"{artifact_prefix(storage_uri, namespace, name)}/{key}"
