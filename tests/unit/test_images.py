"""The Dockerfiles install what CI installs: the same torch pin, extras that exist and that CI's own
install covers, the same requirement specifiers; no secrets, pinned bases, non-root final stages.

No Docker engine runs here, so this is what keeps the images honest between real builds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": REPO / "operator" / "Dockerfile",
    "builder": REPO / "builder_image" / "Dockerfile",
    "triton": REPO / "builder_image" / "Dockerfile.triton",
    "fetch": REPO / "builder_image" / "Dockerfile.fetch",
}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
# Installed only on GPU machines; CI (CPU) installs everything else the images install.
GPU_ONLY = {"gpu"}


def extras_closure(names: set[str]) -> set[str]:
    """Extras named, plus the ones they pull in through `kubeformer[...]` requirements."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in EXTRAS[name]:
            if match := re.match(r"kubeformer\[([^\]]+)\]", requirement):
                todo += match.group(1).split(",")
    return seen


def pip_installs(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    return [arg for line in re.findall(r"pip install ([^\n&]+)", text) for arg in line.split()]


def installed_extras(dockerfile: Path) -> set[str]:
    found = set()
    for arg in pip_installs(dockerfile):
        if match := re.fullmatch(r"'?\.\[([^\]]+)\]'?", arg):
            found |= set(match.group(1).split(","))
    return found


def requirement_specs() -> dict[str, str]:
    """name -> specifier of every requirement in pyproject (core and extras)."""
    specs = {}
    for requirement in [*PYPROJECT["project"]["dependencies"], *(r for rs in EXTRAS.values() for r in rs)]:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(.*)", requirement).groups()
        specs[name.lower()] = spec.replace(" ", "")
    return specs


def test_images_install_extras_that_ci_installs():
    ci = extras_closure({"dev"})
    assert installed_extras(DOCKERFILES["operator"]) == {"operator"}
    assert installed_extras(DOCKERFILES["builder"]) == {"gpu", "fetch"}
    assert installed_extras(DOCKERFILES["fetch"]) == {"fetch"}  # the init container: no torch, no CUDA
    for name, dockerfile in DOCKERFILES.items():
        extras = installed_extras(dockerfile)
        assert extras <= EXTRAS.keys(), f"{name}: unknown extras {extras - EXTRAS.keys()}"
        assert extras_closure(extras) - GPU_ONLY <= ci, f"{name} installs extras CI never tests"


def test_torch_pin_matches_make_setup():
    pinned = re.search(r"^TORCH_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "torch==" + pinned in pip_installs(DOCKERFILES["builder"])
    assert f'"torch=={pinned}"' in (REPO / "pyproject.toml").read_text()


def test_loose_requirements_use_pyprojects_specifiers():
    specs = requirement_specs()
    for arg in pip_installs(DOCKERFILES["triton"]):
        if re.fullmatch(r"'?\.\[[^\]]+\]'?", arg):
            continue  # the project itself, with extras (checked above)
        name, spec = re.match(r"'?([A-Za-z0-9_.-]+)([^']*)'?", arg).groups()
        assert specs.get(name.lower()) == spec, f"{arg}: pyproject says {name}{specs.get(name.lower())}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pin_bases_run_non_root_and_hold_no_secrets(name):
    text = DOCKERFILES[name].read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(":" in base and not base.endswith(":latest") for base in bases)
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    assert re.search(r"^USER 65532:65532$", final_stage, re.M), "the final stage must run non-root"
    assert not re.search(r"(ARG|ENV)\s+\S*(TOKEN|SECRET|PASSWORD|ACCESS_KEY)", text, re.I)
