"""`kubeformer` entry point: an explicit list of subcommands, errors mapped to exit codes once."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from kubeformer_builder import __version__
from kubeformer_builder.cli import api, bench, build, fetch, predict, run, serve
from kubeformer_builder.errors import KubeformerError

# Each module has NAME, HELP, add_args(parser) and run(args) -> int.
COMMANDS: tuple[ModuleType, ...] = (build, bench, serve, predict, fetch, run, api)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeformer", description="Build and serve fast transformer encoders."
    )
    parser.add_argument("--version", action="version", version=f"kubeformer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_args(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KubeformerError as error:
        print(f"kubeformer {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"kubeformer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
