"""Flags shared by the commands that build (build, bench, run), parsed into a BuildConfig once.

The flags come from the one table of build settings (build_fields.py): names, choices, help and
defaults are not repeated here.
"""

from __future__ import annotations

import argparse

from kubeformer_builder.build_fields import build_fields
from kubeformer_builder.config import BuildConfig, parse_build_config


def add_model_args(parser: argparse.ArgumentParser) -> None:
    for field in build_fields():
        field.add_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace, **fallbacks) -> BuildConfig:
    """The BuildConfig of parsed flags; `fallbacks` stand in for settings the flags left unset."""
    values = {field.key: getattr(args, field.key, None) for field in build_fields()}
    values.update({key: value for key, value in fallbacks.items() if values.get(key) is None})
    return parse_build_config(**values)
