"""The ``pytest-llmperf`` console script: the core's commands (cli.py: history, markdown, report)
and the fleet's (fleet/cli.py). It sits above both, so that the core never imports a feature."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import cli
from .fleet import cli as fleet_cli


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.build_parser(extend=fleet_cli.add_commands).parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "fleet":
        return fleet_cli.run_args(args)
    return cli.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
