"""Start, watch and stop the component processes.

Each component runs in its own session (process group), logs to its own file and leaves a pid file,
so a control plane can be stopped by the process that started it, by an atexit hook after a crash
of the test session, or by a later `python -m tests.cluster down` that only has the state directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ComponentError(RuntimeError):
    """A component exited or never became ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class Component:
    name: str
    process: subprocess.Popen
    log: Path

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ComponentError(f"{self.name} exited with code {code}; {self.log}:\n{tail(self.log)}")


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it, the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, argv: list[str], state_dir: Path, detached: bool) -> Component:
    """Start a component in its own session; unless `detached`, the kernel kills it if this process dies.

    That covers what atexit cannot: a test session killed with SIGKILL (an OOM kill, a CI timeout).
    """
    log = state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,
        )
    pid_file(state_dir, name).parent.mkdir(exist_ok=True)
    pid_file(state_dir, name).write_text(str(process.pid))
    return Component(name, process, log)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. Linux only, like the rest of this control plane.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / "pids" / f"{name}.pid"


def stop_all(state_dir: Path, names: list[str], grace_seconds: float = 10.0) -> None:
    """SIGTERM each recorded process group in the given order, then SIGKILL what is left."""
    for name in names:
        path = pid_file(state_dir, name)
        if not path.exists():
            continue
        pgid = int(path.read_text())
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        path.unlink()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    # Reap our own child first, so that it does not linger as a zombie that still counts as alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(
    ready: Callable[[], bool],
    what: str,
    watched: list[Component],
    timeout: float = 60.0,
    interval: float = 0.1,
) -> None:
    """Poll `ready` until it returns True; fail early, with logs, when a watched component dies."""
    deadline = time.monotonic() + timeout
    while True:
        for component in watched:
            component.check_running()
        if ready():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.log}:\n{tail(c.log)}" for c in watched)
            raise ComponentError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def running(state_dir: Path, name: str) -> bool:
    path = pid_file(state_dir, name)
    return path.exists() and _group_alive(int(path.read_text()))
