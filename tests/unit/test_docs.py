"""Docs that list cases stay complete: every refused spec the tests check has its row."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bad_spec_cases() -> list[str]:
    """The keys of BAD_SPECS in tests/integration/test_crd.py, read without importing it."""
    tree = ast.parse((REPO / "tests" / "integration" / "test_crd.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "BAD_SPECS":
            return [key.value for key in node.value.keys]
    raise AssertionError("BAD_SPECS not found")


def test_every_refused_spec_is_in_the_bad_input_table():
    rows = {
        line.split("|")[1].strip()
        for line in (REPO / "docs" / "bad-input.md").read_text().splitlines()
        if line.startswith("| ")
    }
    missing = [case for case in bad_spec_cases() if case not in rows]
    assert not missing, f"docs/bad-input.md lacks rows for {missing}"
    assert len(bad_spec_cases()) >= 30
