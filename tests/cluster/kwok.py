"""kwok's part of the control plane: fake nodes and the Stages that move pods through their lifecycle.

kwok runs with `--enable-crds=Stage`, so every lifecycle rule is a Stage object in the API server and
a test can add its own while the cluster runs. The defaults are kwok's own "fast" stages, the set
kwokctl installs: nodes become Ready at once and renew their leases, pods become Ready at once, pods
owned by a Job succeed at once, and deleted pods go away.

A test changes the fate of particular pods with a Stage of positive `weight` selecting them by label:
kwok only picks among matching stages with positive weight when there are any, and the default
stages have none, so the test's stage always wins for the pods it selects and never touches others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

STAGE_API_VERSION = "kwok.x-k8s.io/v1alpha1"
STAGE_CRD_FILE = "kwok.x-k8s.io_stages.yaml"
# Copied from the kwok module by tests/cluster/build.py, next to the kwok binary.
ASSET_PATHS = (
    f"kustomize/crd/bases/{STAGE_CRD_FILE}",
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
# kwok manages only nodes carrying this annotation (--manage-nodes-with-annotation-selector).
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NODE_LEASE_SECONDS = 40  # kwokctl's default; leases keep the node lifecycle controller from evicting pods


def stage_crd(assets: Path) -> dict[str, Any]:
    return yaml.safe_load((assets / STAGE_CRD_FILE).read_text())


def default_stages(assets: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load((assets / Path(p).name).read_text()) for p in ASSET_PATHS[1:]]


def fake_node(name: str) -> dict[str, Any]:
    """A node kwok manages, big enough for any test workload, GPUs included, and without taints."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "250", "nvidia.com/gpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION[0]: NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def _terminated_template(exit_code: int, reason: str, message: str, phase: str) -> str:
    """Every container terminated with `exit_code`; `message` where a kubelet puts /dev/termination-log."""
    return f"""
{{{{ $now := Now }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- image: {{{{ .image | Quote }}}}
  name: {{{{ .name | Quote }}}}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {int(exit_code)}
      reason: {reason}
      message: {json.dumps(message)}
      startedAt: {{{{ $now | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
phase: {phase}
"""


def pod_fails_stage(
    name: str, labels: dict[str, str], exit_code: int = 1, message: str = ""
) -> dict[str, Any]:
    """Running pods with `labels` terminate: every container exits with `exit_code` and `message`."""
    status = _terminated_template(exit_code, "Error", message, "Failed")
    return _pod_stage(name, labels, phase="Running", status_template=status)


def pod_succeeds_stage(name: str, labels: dict[str, str], message: str = "") -> dict[str, Any]:
    """Running pods with `labels` complete: every container exits 0 with `message`."""
    status = _terminated_template(0, "Completed", message, "Succeeded")
    return _pod_stage(name, labels, phase="Running", status_template=status)


def pod_held_stage(name: str, labels: dict[str, str], unless_label: str) -> dict[str, Any]:
    """Running pods with `labels` stay running (for an hour) until a test gives them `unless_label`.

    Job pods otherwise complete at once (kwok's default); a held pod waits while the test does the
    pod's work itself, then labels it and applies the stage that decides its end.
    """
    stage = _pod_stage(name, labels, phase="Running", status_template="phase: Running\n")
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": f".metadata.labels[{json.dumps(unless_label)}]", "operator": "DoesNotExist"}
    )
    stage["spec"]["delay"] = {"durationMilliseconds": 3_600_000}
    return stage


# A started pod that is not ready: the head of a status template, `$now` defined.
_STARTED_NOT_READY = """
{{ $now := Now }}
conditions:
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }}}
phase: Running
startTime: {{ $now | Quote }}
"""


def pod_never_ready_stage(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Pending pods with `labels` start but never become ready, like a server that cannot load its model."""
    containers = """containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
"""
    return _pod_stage(name, labels, phase="Pending", status_template=_STARTED_NOT_READY + containers)


def pod_crash_loop_stage(name: str, labels: dict[str, str], message: str) -> dict[str, Any]:
    """Pending pods with `labels` crash-loop: every container waits in CrashLoopBackOff after exiting 1
    with `message` (what FallbackToLogsOnError makes of a crashing server's last log lines)."""
    containers = """containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 3
  started: false
  state:
    waiting: {reason: CrashLoopBackOff, message: back-off 40s restarting failed container}
  lastState:
    terminated:
      exitCode: 1
      reason: Error
      message: MESSAGE
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
""".replace("MESSAGE", json.dumps(message))
    return _pod_stage(name, labels, phase="Pending", status_template=_STARTED_NOT_READY + containers)


def _pod_stage(name: str, labels: dict[str, str], phase: str, status_template: str) -> dict[str, Any]:
    expressions = [
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
        {"key": ".status.phase", "operator": "In", "values": [phase]},
        *(
            {"key": f".metadata.labels[{json.dumps(k)}]", "operator": "In", "values": [v]}
            for k, v in labels.items()
        ),
    ]
    return {
        "apiVersion": STAGE_API_VERSION,
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": expressions},
            "weight": 1,
            "next": {"statusTemplate": status_template},
        },
    }
