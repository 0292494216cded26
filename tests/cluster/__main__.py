"""`python -m tests.cluster build|up|down`: the command line behind `make cluster` and `make cluster-down`.

`up` starts the same control plane the tests use, leaves it running in the background (each component
in its own session, so it outlives this process) and returns once it is ready; `down` stops the
processes recorded in the state directory and removes it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.cluster import build, controlplane, processes

DEFAULT_STATE = Path(".cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build or find the cached binaries and print their paths")
    for name, text in (
        ("up", "start a control plane in the background"),
        ("down", "stop it, remove its state"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--state", type=Path, default=DEFAULT_STATE, help="state directory (default: .cluster)"
        )
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build()
    if args.command == "up":
        return _up(args.state.resolve())
    return _down(args.state.resolve())


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build() -> int:
    binaries = build.ensure_binaries(_log)
    for field, path in vars(binaries).items():
        print(f"{field}: {path}")
    return 0


def _up(state: Path) -> int:
    kubeconfig = state / "kubeconfig"
    if kubeconfig.exists() and processes.running(state, "kube-apiserver"):
        _log(f"[cluster] already running; KUBECONFIG={kubeconfig}")
        return 0
    # Whatever is there is left over from a control plane that died or was killed: start clean.
    controlplane.stop(state)
    shutil.rmtree(state, ignore_errors=True)
    binaries = build.ensure_binaries(_log)
    try:
        plane = controlplane.ControlPlane(state, binaries, detached=True).start()
    except processes.ComponentError as error:
        _log(f"[cluster] failed to start: {error}")
        return 1
    _log(f"[cluster] up in {plane.startup_seconds:.1f}s at {plane.server}; logs in {plane.logs}")
    _log(f"[cluster] export KUBECONFIG={kubeconfig}   # stop with: make cluster-down")
    return 0


def _down(state: Path) -> int:
    controlplane.stop(state)
    shutil.rmtree(state, ignore_errors=True)
    _log(f"[cluster] stopped; removed {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
