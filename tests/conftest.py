"""Shared fixtures: each module under tests/fixtures starts one real component, once per session."""

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.builds",
    "tests.fixtures.cluster",
    "tests.fixtures.triton",
    "tests.fixtures.operator",
    "tests.fixtures.prometheus",
    "tests.fixtures.helm",
]
