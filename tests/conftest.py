"""Shared fixtures, registered as plugins so every test directory sees the same session servers."""

pytest_plugins = ["tests.fixtures.triton"]
