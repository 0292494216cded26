"""`kubeformer` entry point: an explicit list of subcommands, errors mapped to exit codes once.

Each subcommand needs one pip extra (`builder`, `fetch`, `serve`). A subcommand whose extra is not
installed still shows in `--help` and, when run, says which extra to install instead of a traceback,
so `pip install kubeformer[fetch]` gives a working `kubeformer fetch` and a clear message for the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from kubeformer_builder import __version__
from kubeformer_builder.errors import BackendUnavailableError, KubeformerError

# (subcommand, module, the extra that installs what it imports). Each module has NAME, HELP,
# add_args(parser) and run(args) -> int.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("build", "kubeformer_builder.cli.build", "builder"),
    ("bench", "kubeformer_builder.cli.bench", "builder"),
    ("serve", "kubeformer_builder.cli.serve", "serve"),
    ("predict", "kubeformer_builder.cli.predict", "serve"),
    ("fetch", "kubeformer_builder.cli.fetch", "fetch"),
    ("run", "kubeformer_builder.cli.run", "builder,serve"),
    ("api", "kubeformer_builder.cli.api", "api"),
)


class MissingExtraError(BackendUnavailableError):
    """A subcommand's third-party dependency is not installed: names the pip extra that installs it."""

    def __init__(self, command: str, extra: str, missing: ModuleNotFoundError) -> None:
        super().__init__(
            f"needs the {extra!r} extra, which is not installed (no module {missing.name!r}): "
            f"pip install 'kubeformer[{extra}]'"
        )


def _missing_dependency(error: ModuleNotFoundError) -> bool:
    """A third-party module is absent (a missing module of our own is a bug, not a missing extra)."""
    return not (error.name or "").startswith("kubeformer_")


def _load(module_name: str) -> ModuleType | ModuleNotFoundError:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not _missing_dependency(error):
            raise
        return error


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeformer", description="Build and serve fast transformer encoders."
    )
    parser.add_argument("--version", action="version", version=f"kubeformer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, extra in COMMANDS:
        module = _load(module_name)
        if isinstance(module, ModuleNotFoundError):
            unavailable = f"(unavailable: pip install 'kubeformer[{extra}]')"
            sub = commands.add_parser(name, help=unavailable, description=unavailable)
            sub.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            sub.set_defaults(handler=_refuse(name, extra, module))
            continue
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_args(sub)
        sub.set_defaults(handler=module.run, extra=extra)
    return parser


def _refuse(command: str, extra: str, missing: ModuleNotFoundError):
    def handler(_: argparse.Namespace) -> int:
        raise MissingExtraError(command, extra, missing)

    return handler


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        try:
            return args.handler(args)
        except ModuleNotFoundError as error:  # a dependency imported only when the command runs
            if not _missing_dependency(error):
                raise
            raise MissingExtraError(args.command, args.extra, error) from error
    except KubeformerError as error:
        print(f"kubeformer {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"kubeformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
