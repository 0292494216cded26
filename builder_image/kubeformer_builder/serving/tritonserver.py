"""Run the `tritonserver` binary that the nvidia-pytriton wheel bundles (Triton 2.51, python backend only).

The wheel's layout is not a runnable install: the python backend stub for the running interpreter
sits in python_backend_stubs/<X.Y>/, and the binary needs the wheel's bundled libraries and this
Python's libpython on LD_LIBRARY_PATH. `prepare_install` assembles a backend directory holding the
python backend, its stub and our Python-based onnxruntime backend; `TritonServer` starts the binary
on 127.0.0.1, waits until it is ready and stops it cleanly.

The wheel's python backend stub is built against numpy 1's C ABI: under numpy 2 it corrupts every
input tensor (a BYTES input kills the stub). So serving refuses numpy 2 up front, and a stub that dies
while serving (Triton 2.51 neither restarts it nor marks its model unready; every request then fails
with "Stub process ... is not healthy") stops the server with its log instead of serving errors.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubeformer_builder.errors import BackendUnavailableError, ServeError

ONNXRUNTIME_BACKEND_SOURCE = Path(__file__).parents[1] / "triton" / "onnxruntime_backend.py"
_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_LOG_TAIL = 40
STUB_NAME = "triton_python_backend_stub"
# nvidia-pytriton 0.7.0's stub reads numpy arrays through numpy 1's struct layout (pytriton pins numpy<2).
STUB_NUMPY_MAJOR = 1


@dataclass(frozen=True)
class Distribution:
    """Where the pytriton wheel keeps the pieces of Triton."""

    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def find_distribution() -> Distribution:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "tritonserver: nvidia-pytriton is not installed; pip install 'kubeformer[serve]'"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    distribution = Distribution(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
    for path in (distribution.binary, distribution.stub(), distribution.libs):
        if not path.exists():
            raise BackendUnavailableError(f"tritonserver: {path} is missing from the nvidia-pytriton install")
    return distribution


def check_numpy(version: str) -> None:
    """Refuse a numpy whose major version differs from the one the python backend stub is built for."""
    if int(version.split(".")[0]) != STUB_NUMPY_MAJOR:
        raise BackendUnavailableError(
            f"tritonserver: numpy {version} is installed, but the python backend stub of nvidia-pytriton "
            f"(which runs the tokenizer) only works with numpy {STUB_NUMPY_MAJOR}.x; install "
            f"'numpy<{STUB_NUMPY_MAJOR + 1}' in this environment (kubeformer[serve] pins it), or serve "
            "with the Triton container image (the operator's Triton pods)"
        )


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def prepare_install(distribution: Distribution, dest: Path) -> Path:
    """dest/backends with python/ (library, utils, stub) and onnxruntime/model.py; returns it.

    Copies, not symlinks: Triton resolves links and refuses a backend library outside its directory.
    """
    backends = dest / "backends"
    for name in _PYTHON_BACKEND_FILES:
        _copy(distribution.root / "backends" / "python" / name, backends / "python" / name)
    _copy(distribution.stub(), backends / "python" / "triton_python_backend_stub")
    _copy(ONNXRUNTIME_BACKEND_SOURCE, backends / "onnxruntime" / "model.py")
    return backends


def server_environment(distribution: Distribution) -> dict[str, str]:
    """This venv's bin first on PATH (the stub's Python), libpython and the wheel's libraries loadable."""
    env = dict(os.environ)
    libraries = [sysconfig.get_config_var("LIBDIR"), str(distribution.libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libraries if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass(frozen=True)
class Endpoints:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"


def server_command(binary: Path, repositories: list[Path], backends: Path, endpoints: Endpoints) -> list[str]:
    return [
        str(binary),
        *(f"--model-repository={repository}" for repository in repositories),
        f"--backend-directory={backends}",
        f"--http-address={endpoints.host}",
        f"--http-port={endpoints.http_port}",
        f"--grpc-address={endpoints.host}",
        f"--grpc-port={endpoints.grpc_port}",
        f"--metrics-address={endpoints.host}",
        f"--metrics-port={endpoints.metrics_port}",
        # p50/p95/p99 per model (nv_inference_*_summary_us); this Triton has no latency histograms.
        "--metrics-config=summary_latencies=true",
        "--allow-gpu-metrics=false",
        "--exit-on-error=true",
        "--strict-readiness=true",
        # In-flight requests get this long to finish on stop; idle keep-alive connections also hold
        # Triton until it expires, so it stays short.
        "--exit-timeout-secs=10",
    ]


def find_stubs(parent: int) -> dict[int, str]:
    """The python backend stubs `parent` started: pid -> model instance name (e.g. NAME_tokenizer_0_0)."""
    stubs = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):  # not a process, or it ended while we looked
            continue
        parent_pid = int(stat.rsplit(")", 1)[1].split()[1])
        if parent_pid == parent and command[0].endswith(STUB_NAME):
            # argv: stub, model file, shm region, sizes, parent pid, backend dir, ..., instance name
            stubs[int(entry.name)] = command[8] if len(command) > 8 else command[1]
    return stubs


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TritonServer:
    """One tritonserver process; `with TritonServer(...) as server:` starts it and waits until ready."""

    def __init__(
        self,
        repositories: list[Path],
        workdir: Path,
        endpoints: Endpoints = Endpoints(),
        log: Callable[[str], None] = lambda line: None,
        startup_timeout_s: float = 300.0,
    ):
        self.repositories = repositories
        self.workdir = workdir
        self.endpoints = endpoints
        self.log = log
        self.startup_timeout_s = startup_timeout_s
        self.tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
        self.process: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None
        self.stubs: dict[int, str] = {}  # python backend stubs at readiness: pid -> instance name

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        import numpy

        check_numpy(numpy.__version__)
        distribution = find_distribution()
        backends = prepare_install(distribution, self.workdir)
        command = server_command(distribution.binary, self.repositories, backends, self.endpoints)
        # Own session: a terminal's Ctrl-C reaches us, and we stop Triton in order.
        self.process = subprocess.Popen(
            command,
            env=server_environment(distribution),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        self._pump = threading.Thread(target=self._read_log, name="tritonserver-log", daemon=True)
        self._pump.start()

    def _read_log(self) -> None:
        for line in self.process.stdout:
            self.tail.append(line.rstrip("\n"))
            self.log(line.rstrip("\n"))

    def _failure(self, what: str) -> ServeError:
        tail = "\n".join(self.tail)
        return ServeError(f"tritonserver {what}; its last log lines:\n{tail}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoints.http + "/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._pump.join(timeout=5)
                raise self._failure(f"exited with code {self.process.returncode} while starting")
            if self.ready():
                self.stubs = find_stubs(self.process.pid)
                return
            time.sleep(0.25)
        raise self._failure(f"was not ready after {self.startup_timeout_s:.0f}s")

    def check_alive(self) -> None:
        """Raise ServeError if Triton exited or one of its python backend stubs died."""
        if self.process.poll() is not None:
            raise self._failure(f"stopped on its own with code {self.process.returncode}")
        dead = sorted(name for pid, name in self.stubs.items() if not is_running(pid))
        if dead:
            raise self._failure(
                f"python backend stub of {', '.join(dead)} died: Triton still reports the model ready "
                "but fails every request to it"
            )

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT (Triton's own clean shutdown), then SIGKILL of its process group if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._pump is not None:
            self._pump.join(timeout=5)
