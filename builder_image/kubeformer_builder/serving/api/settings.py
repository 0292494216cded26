"""The front's settings, free of heavy imports so the CLI can build them before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8080


@dataclass(frozen=True)
class ApiSettings:
    """How the front reaches Triton and what it accepts; defaults are what `kubeformer serve` uses."""

    triton_url: str = "grpc://127.0.0.1:8001"
    repositories: tuple[Path, ...] = ()  # model repositories holding each ensemble's tokenizer
    max_inputs: int = 256  # texts per request; more is refused with 413
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout_s: float = 30.0  # a body not received by then is refused with 408
    created: int = 0  # unix seconds reported by /v1/models


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
