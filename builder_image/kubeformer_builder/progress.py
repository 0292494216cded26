"""Progress on stderr: one line per stage start and end with its duration (the Job's log)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("kubeformer")


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("kubeformer")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Log a stage's start and end; record its duration in `timings` for the manifest."""
    log.info("stage %s: started", name)
    started = time.perf_counter()
    try:
        yield
    except Exception:
        log.error("stage %s: failed after %.1fs", name, time.perf_counter() - started)
        raise
    timings[name] = round(time.perf_counter() - started, 2)
    log.info("stage %s: done in %.1fs", name, timings[name])
