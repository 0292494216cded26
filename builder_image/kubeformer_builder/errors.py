"""Errors the builder reports to people, with the exit code the CLI maps each one to.

Every error carries one line a user can act on: what was wrong, where, and what to try.
The CLI prints it, writes it into the JSON result and the termination log, so the
operator can copy it into the custom resource's status unchanged.
"""

from __future__ import annotations


class KubeformerError(Exception):
    """Base of every error that is the user's input or environment, not a bug."""

    exit_code = 1
    reason = "BuildFailed"


class ConfigError(KubeformerError):
    """A flag, spec field or combination of them is invalid."""

    exit_code = 2
    reason = "InvalidSpec"


class SourceError(KubeformerError):
    """The model, tokenizer or calibration source cannot be found or read."""

    exit_code = 3
    reason = "SourceUnavailable"


class UnsupportedModelError(KubeformerError):
    """The model's architecture or its fit with the task is not supported."""

    exit_code = 4
    reason = "UnsupportedModel"


class StorageError(KubeformerError):
    """Object storage is unreachable, refuses the credentials, or holds a corrupt artifact."""

    exit_code = 5
    reason = "StorageFailed"


class GateError(KubeformerError):
    """No variant of the requested precision passed the accuracy gate."""

    exit_code = 6
    reason = "GateFailed"


class ArtifactError(KubeformerError):
    """An artifact is incomplete or does not match its manifest."""

    exit_code = 7
    reason = "ArtifactInvalid"


class BackendUnavailableError(KubeformerError):
    """The requested backend (TensorRT, CUDA) is not available on this machine."""

    exit_code = 8
    reason = "BackendUnavailable"


class ServeError(KubeformerError):
    """Triton did not start, or stopped on its own."""

    exit_code = 9
    reason = "ServeFailed"
