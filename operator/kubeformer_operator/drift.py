"""Whether a rendered child differs from its live copy in what the operator owns: write only then.

The operator renders each child in full on every reconcile; applying it every time would be a write
per child per object per trigger (tens of writes per second at a thousand quiet objects). Like
KServe's semantic.DeepDerivative, `covers` compares only what the rendering sets: fields the API
server defaults or other controllers add are ignored, lists must match element by element.
`owned_but_dropped` finds the reverse: a field this field manager applied before (the live object's
managedFields) that the rendering no longer sets, which only an apply releases (e.g. `replicas` once
an autoscaler takes over).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None, manager: str) -> bool:
    """True when `live` is missing or an apply of `desired` by `manager` would change it."""
    if live is None:
        return True
    return not covers(desired, live) or owned_but_dropped(_owned_fields(live, manager), desired)


def covers(desired: Any, live: Any) -> bool:
    """Every field of `desired` is in `live` with an equal value (dicts: a subset; lists: same length,
    element by element; scalars: equal, or the same Kubernetes quantity, "1000m" and "1")."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(k in live and covers(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(covers(want, have) for want, have in zip(desired, live, strict=True))
        )
    return desired == live or _same_quantity(desired, live)


def _same_quantity(desired: Any, live: Any) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if not isinstance(desired, str | int | float) or not isinstance(live, str | int | float):
        return False
    try:
        return parse_quantity(desired) == parse_quantity(live)
    except (ValueError, InvalidOperation, TypeError):
        return False


def _owned_fields(live: Mapping[str, Any], manager: str) -> dict[str, Any]:
    """The fieldsV1 tree of what `manager` applied to `live` (empty when it never applied)."""
    for entry in live.get("metadata", {}).get("managedFields") or ():
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return entry.get("fieldsV1") or {}
    return {}


def owned_but_dropped(owned: Mapping[str, Any], desired: Any) -> bool:
    """A field in the managedFields tree `owned` ("f:name" for map fields, "k:{...}" for list elements
    keyed by their fields) that `desired` no longer has. Set members ("v:") and atomic lists are
    values, which `covers` compares."""
    for key, below in owned.items():
        if key.startswith("f:"):
            name = key[2:]
            if not isinstance(desired, Mapping) or name not in desired:
                return True
            if below and owned_but_dropped(below, desired[name]):
                return True
        elif key.startswith("k:"):
            element = _element(desired, json.loads(key[2:]))
            if element is None or (below and owned_but_dropped(below, element)):
                return True
    return False


def _element(desired: Any, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if not isinstance(desired, list):
        return None
    for element in desired:
        if isinstance(element, Mapping) and all(covers(v, element.get(k)) for k, v in key.items()):
            return element
    return None
