"""The ``pytest-llmperf`` console script: the core's commands (cli.py: history, markdown, report;
roofline/cli.py: roofline) and the fleet's (fleet/cli.py). It sits above both, so that the core
never imports a feature."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import cli
from .fleet import cli as fleet_cli
from .roofline import cli as roofline_cli


def _extend(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    fleet_cli.add_commands(commands, parser_class)
    roofline_cli.add_commands(commands, parser_class)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.build_parser(extend=_extend).parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "fleet":
        return fleet_cli.run_args(args)
    if args.command == "roofline":
        return roofline_cli.run_args(args)
    return cli.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
