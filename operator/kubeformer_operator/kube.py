"""The operator's only reader and writer of Kubernetes objects, as plain dicts over the REST API.

A handful of kinds at fixed paths, no discovery: what the operator touches is visible here and in
its RBAC. Writes of owned serving objects are server-side applies under one field manager, so a
change made by someone else to a field we do not render survives, and ours is put back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import kubernetes

from kubeformer_operator import metrics

Obj = dict[str, Any]

# kind -> (API prefix, plural)
PATHS: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
    "OptimizedTransformer": ("/apis/kubeformer.dev/v1alpha1", "optimizedtransformers"),
}
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient, field_manager: str) -> None:
        self.api, self.field_manager = api, field_manager

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Obj:
        url = path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        _, full_url, headers, serialized, _ = self.api.param_serialize(
            method, url, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        metrics.api_request(method)
        response = self.api.call_api(method, full_url, header_params=headers, body=serialized)
        response.read()
        if response.status >= 400:
            raise kubernetes.client.ApiException(http_resp=response)
        return json.loads(response.data) if response.data else {}

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        prefix, plural = PATHS[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return path + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return self._request("GET", self.path(kind, namespace, name))
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[Obj]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self._request("GET", self.path(kind, namespace), query={"labelSelector": selector})["items"]

    def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return self._request("POST", self.path(obj["kind"], meta["namespace"]), body=obj)

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply: we own exactly the fields we render."""
        meta = obj["metadata"]
        return self._request(
            "PATCH",
            self.path(obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            query={"fieldManager": self.field_manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(
        self, kind: str, namespace: str, name: str, patch: Obj, subresource: str | None = None
    ) -> Obj:
        return self._request(
            "PATCH",
            self.path(kind, namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete with its dependents in the background; False when it was already gone."""
        try:
            self._request(
                "DELETE",
                self.path(kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def crd_installed(self, name: str) -> bool:
        try:
            self._request("GET", f"{CRD_PATH}/{name}")
        except kubernetes.client.ApiException as error:
            if error.status in (403, 404):
                return False
            raise
        return True
