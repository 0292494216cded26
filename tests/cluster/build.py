"""Build the control plane's binaries with `go build` into a per-version cache outside the repository.

k8s.io/kubernetes is not meant to be required as a module: its go.mod points every staging module
(k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it with ./staging/src/..., and replace
directives of a dependency are ignored. So each build happens in a small generated wrapper module that
requires the pinned release and replaces every staging module with its published v0.<minor>.<patch>.
The staging list is read from the release's own go.mod, so a version bump needs no other edit.

Only the first run on a machine compiles (many minutes on two cores); later runs find the binaries in
`~/.cache/kubeformer/cluster/<component>-<version>/bin`. Go's module and build caches stay in their
default places (~/go/pkg/mod, ~/.cache/go-build) so every checkout on the machine shares them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import kwok, versions

# Stripped, path-independent binaries: smaller to link, identical across checkouts.
GO_BUILD_FLAGS = ("-trimpath",)
BASE_LDFLAGS = ("-s", "-w")


class BuildError(RuntimeError):
    """`go` failed; the message carries its exact output and the wrapper go.mod."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kwok_assets: Path  # the Stage CRD and default Stages of the same kwok version


@dataclass(frozen=True)
class GoBuild:
    """One wrapper module: a required module at a pinned version and the main packages to build from it."""

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    replace_staging: bool = False
    ldflags: tuple[str, ...] = ()
    # Files of the module (paths inside it) copied flat into `<target>/assets`, e.g. manifests
    # that must match the built version.
    assets: tuple[str, ...] = ()

    def binary_names(self) -> tuple[str, ...]:
        return tuple(_binary_name(p) for p in self.packages)


ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"


def _binary_name(package: str) -> str:
    """The name `go build -o DIR/` gives a package's binary, except etcd's, which `_build` renames."""
    if package == ETCD_PACKAGE:
        return "etcd"
    parts = package.split("/")
    if parts[-1].startswith("v") and parts[-1][1:].isdigit():
        parts = parts[:-1]  # go drops a trailing major-version element: .../server/v3 -> server
    return parts[-1]


def kubernetes_build() -> GoBuild:
    version = versions.KUBERNETES
    major, minor = version.lstrip("v").split(".")[:2]
    # What hack/lib/version.sh stamps into release builds, so `kubectl version` and /version tell the truth.
    stamp = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    ldflags = tuple(
        f"-X k8s.io/{pkg}/version.{key}={value}"
        for pkg in ("component-base", "client-go/pkg")
        for key, value in stamp.items()
    )
    return GoBuild(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=version,
        packages=(
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            # kwok fakes kubelets, not the scheduler: pods need a real one to land on the fake nodes.
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
            ETCD_PACKAGE,
        ),
        replace_staging=True,
        ldflags=ldflags,
    )


def kwok_build() -> GoBuild:
    return GoBuild(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=versions.KWOK,
        packages=("sigs.k8s.io/kwok/cmd/kwok",),
        assets=kwok.ASSET_PATHS,
    )


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubeformer" / "cluster"


def ensure_binaries(log: Callable[[str], None] = print) -> Binaries:
    """Return the cached binaries, building whatever is missing first."""
    k8s_bin = _ensure(kubernetes_build(), log)
    kwok_bin = _ensure(kwok_build(), log)
    return Binaries(
        etcd=k8s_bin / "etcd",
        kube_apiserver=k8s_bin / "kube-apiserver",
        kube_controller_manager=k8s_bin / "kube-controller-manager",
        kube_scheduler=k8s_bin / "kube-scheduler",
        kubectl=k8s_bin / "kubectl",
        kwok=kwok_bin / "kwok",
        kwok_assets=kwok_bin.parent / "assets",
    )


def _ensure(build: GoBuild, log: Callable[[str], None]) -> Path:
    """The bin directory of `build`, compiled under a file lock so parallel sessions build it once."""
    target = cache_root() / f"{build.name}-{build.version}"
    bin_dir = target / "bin"
    if _complete(build, bin_dir):
        return bin_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(build, bin_dir):
            _build(build, target, log)
    return bin_dir


def _complete(build: GoBuild, bin_dir: Path) -> bool:
    assets = bin_dir.parent / "assets"
    return all(os.access(bin_dir / name, os.X_OK) for name in build.binary_names()) and all(
        (assets / Path(a).name).is_file() for a in build.assets
    )


def _build(build: GoBuild, target: Path, log: Callable[[str], None]) -> None:
    # Build next to the target and rename at the end, so a killed build never looks complete.
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    src, out = work / "src", work / "bin"
    src.mkdir(parents=True)
    names = ", ".join(build.binary_names())
    log(f"[cluster] building {names} from {build.module}@{build.version} into {target} (first run here)")
    started = time.monotonic()
    go_mod = _wrapper_go_mod(build, src)
    (src / "go.mod").write_text(go_mod)
    _go(["mod", "tidy"], src, go_mod)
    if build.assets:
        module_dir = Path(_go(["list", "-m", "-f", "{{.Dir}}", build.module], src, go_mod).strip())
        (work / "assets").mkdir()
        for asset in build.assets:
            shutil.copyfile(module_dir / asset, work / "assets" / Path(asset).name)
    ldflags = " ".join((*BASE_LDFLAGS, *build.ldflags))
    _go(["build", *GO_BUILD_FLAGS, f"-ldflags={ldflags}", "-o", str(out) + "/", *build.packages], src, go_mod)
    if ETCD_PACKAGE in build.packages:
        (out / "server").rename(out / "etcd")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    log(f"[cluster] built {names} in {minutes}m{seconds:02d}s")


def _wrapper_go_mod(build: GoBuild, src: Path) -> str:
    go_version, staging = _read_required_go_mod(build, src)
    lines = [
        "// Generated by tests/cluster/build.py; see its docstring.",
        "module kubeformer.test/cluster-build",
        "",
    ]
    # At least the required module's own `go` version, or `go mod tidy` refuses it.
    lines += [f"go {go_version}", ""] if go_version else []
    lines += [f"require {build.module} {build.version}", ""]
    if build.replace_staging and staging:
        published = "v0." + build.version.lstrip("v").split(".", 1)[1]  # v1.36.3 -> v0.36.3
        lines += ["replace (", *(f"\t{m} => {m} {published}" for m in staging), ")", ""]
    lines += ["tool (", *(f"\t{p}" for p in build.packages), ")", ""]
    return "\n".join(lines)


def _read_required_go_mod(build: GoBuild, cwd: Path) -> tuple[str | None, list[str]]:
    """The `go` directive of the required module and the modules it replaces with ./staging paths."""
    info = json.loads(_go(["mod", "download", "-json", f"{build.module}@{build.version}"], cwd, ""))
    go_version, staging = None, []
    for raw in Path(info["GoMod"]).read_text().splitlines():
        line = raw.strip()
        if line.startswith("go "):
            go_version = line.split()[1]
        elif "=> ./staging/" in line:
            staging.append(line.split()[0])
    return go_version, staging


def _go(args: list[str], cwd: Path, go_mod: str, extra_env: dict[str, str] | None = None) -> str:
    # nice: other work shares this machine's few cores; the build can wait for them.
    env = {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off", **(extra_env or {})}
    proc = subprocess.run(
        ["nice", "-n", "10", "go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(
            f"`go {' '.join(args)}` failed in {cwd} (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}"
            + (f"\n--- go.mod ---\n{go_mod}" if go_mod else "")
        )
    return proc.stdout
