"""Operator settings, read from KUBEFORMER_* environment variables once at startup.

Each variable goes through one typed helper that fails with the variable's name and bad value,
so a misconfigured Deployment stops at start with a readable message instead of misbehaving later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubeformer_builder import __version__
from kubeformer_builder.versions import SERVING

PREFIX = "KUBEFORMER_"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    builder_image: str = f"ghcr.io/kubeformer/builder:{__version__}"
    # The Triton image: NVIDIA's, plus the tokenizer's Python dependencies (builder_image/Dockerfile.triton).
    triton_image: str = f"ghcr.io/kubeformer/triton:{__version__}"
    # The TensorRT inside `triton_image` (versions.SERVING); engines of another TensorRT are not rolled.
    triton_tensorrt: str = SERVING.tensorrt
    # The init container that fetches and verifies artifacts runs `kubeformer fetch` from this slim
    # image (builder_image/Dockerfile.fetch: the `fetch` extra only).
    fetch_image: str = f"ghcr.io/kubeformer/fetch:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    metrics_port: int = 8080
    field_manager: str = "kubeformer-operator"
    # Without KEDA, the autoscaler is an HPA on CPU; with KEDA's CRD installed, a ScaledObject.
    use_keda: bool | None = None  # None: detect the CRD at startup
    prometheus_url: str | None = None  # what KEDA queries for Triton's queue time
    use_service_monitor: bool | None = None  # None: detect the Prometheus Operator's CRD
    # Labels on each per-model ServiceMonitor: what the Prometheus selects monitors by (a default
    # kube-prometheus-stack selects release=<its release name>).
    monitor_labels: dict[str, str] = field(default_factory=dict)
    peering: str | None = None  # kopf peering name; None: standalone
    peering_priority: int = 0  # among peers, the highest priority acts
    requeue_seconds: float = 30.0  # safety-net timer for objects whose children went quiet


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(PREFIX + name, default).strip()
    if not value:
        raise SettingsError(f"{PREFIX}{name}: must not be empty")
    return value


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(PREFIX + name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}: expected a {kind.__name__}, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{PREFIX}{name}: must be positive, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    try:
        return default if raw is None else int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}: expected an int, got {raw!r}") from None


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(PREFIX + name, "auto").strip().lower()
    choices = {"auto": None, "true": True, "false": False}
    if raw not in choices:
        raise SettingsError(f"{PREFIX}{name}: expected auto, true or false, got {raw!r}")
    return choices[raw]


def _labels(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(PREFIX + name, "").strip() or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError(
            f'{PREFIX}{name}: expected a JSON object of strings like {{"release": "x"}}, got {raw!r}'
        )
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    defaults = Settings()
    return Settings(
        builder_image=_text(env, "BUILDER_IMAGE", defaults.builder_image),
        triton_image=_text(env, "TRITON_IMAGE", defaults.triton_image),
        triton_tensorrt=_text(env, "TRITON_TENSORRT_VERSION", defaults.triton_tensorrt),
        fetch_image=_text(env, "FETCH_IMAGE", defaults.fetch_image),
        image_pull_policy=_text(env, "IMAGE_PULL_POLICY", defaults.image_pull_policy),
        metrics_port=int(_number(env, "METRICS_PORT", defaults.metrics_port, int)),
        field_manager=_text(env, "FIELD_MANAGER", defaults.field_manager),
        use_keda=_switch(env, "KEDA"),
        prometheus_url=env.get(PREFIX + "PROMETHEUS_URL") or None,
        use_service_monitor=_switch(env, "SERVICE_MONITOR"),
        monitor_labels=_labels(env, "MONITOR_LABELS"),
        peering=env.get(PREFIX + "PEERING") or None,
        peering_priority=_integer(env, "PEERING_PRIORITY", defaults.peering_priority),
        requeue_seconds=_number(env, "REQUEUE_SECONDS", defaults.requeue_seconds, float),
    )
