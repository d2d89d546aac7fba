"""``pytest-llmperf fleet``: run the suites on many nodes through SLURM and gather one report.

    pytest-llmperf fleet run [--partition P ...] [--nodelist NODES ...] [--results DIR] [--resume RUN_ID]
                             [--time T] [--account A] [--reservation R] [--gpus G] [--no-exclusive]
                             [--sbatch-arg ARG ...] [--fleet-timeout S] [-- PYTEST COMMAND ...]
    pytest-llmperf fleet save-baseline ...   (the same; each node records its baseline)
    pytest-llmperf fleet report --run-id RUN_ID [--results DIR]

Exit status: 0 when every node's job completed with no regression; 1 when a node regressed or its
job failed, was cancelled, timed out or lost its node (each named in the report with its reason);
2 for a usage error (one line: SLURM missing or unreachable, an unknown partition or node, a results
directory that cannot be written); 130 after Ctrl-C, once the submitted jobs are cancelled.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import cli as core_cli
from .gather import exit_status, gather
from .plan import (
    PlanError,
    Run,
    check_command,
    check_run_id,
    down_nodes,
    load,
    new_run_id,
    prepare,
    targets,
    writable_problem,
)
from .render import terminal, write_all
from .shared import warnings
from .slurm import Slurm, SlurmError
from .wait import cancel_live, submit, wait

DEFAULT_RESULTS = "llmperf-fleet"
SAVE_OPTION = "--llmperf-save-baseline"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _submit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", action="append", default=[], metavar="P",
                   help="run on every node of partition P (repeatable)")
    p.add_argument("--nodelist", action="append", default=[], metavar="NODES",
                   help="run on these nodes, a SLURM hostlist such as milkv-[1-4] (repeatable)")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="resume an interrupted run: wait for its live jobs, submit again only the nodes whose "
                        "job did not finish")
    p.add_argument("--run-id", default=None, metavar="RUN_ID", help="the new run's id (default: date, time, random)")
    p.add_argument("--time", default=None, metavar="LIMIT", help="each job's time limit (sbatch --time)")
    p.add_argument("--account", default=None, help="sbatch --account")
    p.add_argument("--reservation", default=None, help="sbatch --reservation")
    p.add_argument("--gpus", default=None, metavar="N", help="sbatch --gpus (per job)")
    p.add_argument("--no-exclusive", dest="exclusive", action="store_false",
                   help="share the nodes with other jobs (default: --exclusive, for timings that hold)")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="another sbatch argument, passed as is (repeatable: --sbatch-arg=--qos=high)")
    p.add_argument("--fleet-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="cancel the jobs still pending or running after this long")
    p.add_argument("--poll", type=_seconds, default=2.0, metavar="SECONDS",
                   help="the longest wait between two looks at the jobs (default 2; 0.5 s after a change, "
                        "growing)")
    p.add_argument("pytest_command", nargs=argparse.REMAINDER, metavar="-- PYTEST COMMAND",
                   help="the command each job runs (default: python -m pytest suites/); the fleet adds "
                        "--llmperf-node and --llmperf-json")


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS), metavar="DIR",
                   help=f"the results directory on the shared file system (default ./{DEFAULT_RESULTS})")
    p.add_argument("--baseline-dir", type=Path, default=Path(core_cli.DEFAULT_BASELINE_DIR), metavar="DIR",
                   help="the baseline directory whose history the HTML report draws, when it exists")
    p.add_argument("--width", type=int, default=None, help="the terminal report's width (default: the terminal's)")


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``fleet`` and its subcommands to the ``pytest-llmperf`` parser's subcommands."""
    fleet = commands.add_parser("fleet", help="run the suites on many nodes through SLURM, gather one report",
                                description="Submit the suites to SLURM nodes (one job per node), wait, and "
                                            "gather a nodes x tests report.")
    actions = fleet.add_subparsers(dest="fleet_action", required=True, metavar="ACTION", parser_class=parser_class)
    for name, text in (("run", "run the suites on each node and compare with its baseline"),
                       ("save-baseline", "run the suites on each node and record its baseline")):
        p = actions.add_parser(name, help=text, description=text)
        _submit_options(p)
        _report_options(p)
        p.set_defaults(handler=cmd_run, mode=name)
    rep = actions.add_parser("report", help="rebuild a run's report from its results directory")
    rep.add_argument("--run-id", required=True, metavar="RUN_ID")
    _report_options(rep)
    rep.set_defaults(handler=cmd_report)


def _say(text: str) -> None:
    print(f"fleet {time.strftime('%H:%M:%S')} {text}", flush=True)


def _sbatch(args: argparse.Namespace) -> list[str]:
    out = ["--exclusive"] if args.exclusive else []
    for opt in ("time", "account", "reservation", "gpus"):
        value = getattr(args, opt)
        if value is not None:
            out.append(f"--{opt}={value}")
    return out + list(args.sbatch_arg)


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.pytest_command)
    if command and command[0] == "--":
        command = command[1:]
    command = check_command(command) or [sys.executable, "-m", "pytest", "suites/"]
    if args.mode == "save-baseline" and SAVE_OPTION not in command:
        command.append(SAVE_OPTION)
    return command


def _new_run(args: argparse.Namespace, slurm: Slurm) -> Run:
    known = slurm.nodes()
    expanded = [slurm.expand(text) for text in args.nodelist]
    jobs = targets(args.partition, expanded, known)
    down = down_nodes(jobs, known)
    if down:
        _say(f"warning: node(s) {', '.join(down)} are down or drained now: their jobs are cancelled if they stay so")
    results = args.results.resolve()
    for w in warnings(results, [known[j.node].hostname for j in jobs if j.node in known]):
        _say(f"warning: {w}")
    run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
    directory = results / run_id
    if directory.exists():
        raise PlanError(f"fleet run {run_id!r} exists in {results}: resume it with --resume {run_id}")
    run = Run(run_id, args.mode, _command(args), str(Path.cwd()), _sbatch(args), time.time(), jobs, directory)
    prepare(run)
    return run


def _finish(run: Run, args: argparse.Namespace) -> int:
    results = gather(run)
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    try:
        paths = write_all(run, results, run.directory, width, _html_inputs(args.baseline_dir, results))
    except (OSError, ValueError) as exc:
        sys.stdout.write(terminal(run, results, width))
        raise PlanError(f"{run.directory}: cannot write the report: {exc}") from None
    sys.stdout.write("\n" + paths["txt"].read_text(encoding="utf-8"))
    print(f"\nreports: {', '.join(str(p) for p in paths.values())}")
    return exit_status(results)


def _html_inputs(baseline_dir: Path, results: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nodes' history and baseline samples for the HTML report, where the baseline directory
    holds them (a node whose files cannot be read is drawn without them)."""
    from .. import html_report
    from ..history import HistoryError, node_history_dir

    histories: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    for r in results:
        if r.run is None:
            continue
        directory = node_history_dir(baseline_dir, r.node, None)
        try:
            if directory.is_dir():
                histories[r.node] = core_cli.history_data(directory)
            nodeids = [t["nodeid"] for t in r.run.get("tests", []) if isinstance(t, dict) and "nodeid" in t]
            if nodeids and (baseline_dir / r.node).is_dir():
                baselines[r.node] = html_report.baseline_samples(baseline_dir, r.node, nodeids)
        except (HistoryError, ValueError, OSError):
            continue
    return histories, baselines


def cmd_run(args: argparse.Namespace) -> int:
    problem = writable_problem(args.results)
    if problem:
        raise PlanError(f"results directory {args.results}: {problem}")
    if args.resume and (args.partition or args.nodelist or args.run_id):
        raise PlanError("--resume RUN_ID takes the nodes and the command of that run: give no --partition, "
                        "--nodelist or --run-id with it")
    slurm = Slurm()
    if args.resume:
        run = load(args.results.resolve(), args.resume)
        if args.pytest_command and _command(args) != run.command:
            raise PlanError(f"--resume {args.resume}: the run's command is {' '.join(run.command)!r}; give none")
    else:
        run = _new_run(args, slurm)
    _say(f"run {run.run_id}: {len(run.jobs)} node(s), results in {run.directory}")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a CI job killed: the same as Ctrl-C
    try:
        submit(slurm, run, _say, resume=bool(args.resume))
        wait(slurm, run, _say, args.poll, args.fleet_timeout)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not stop the cancelling
        count = cancel_live(slurm, run, "interrupted: cancelled by pytest-llmperf fleet", _say)
        if count:  # interrupted while submitting (wait() cancels and says so itself)
            _say(f"interrupted: cancelled {count} job(s); resume with --resume {run.run_id}")
        _finish(run, args)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return _finish(run, args)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_report(args: argparse.Namespace) -> int:
    run = load(args.results.resolve(), args.run_id)
    return _finish(run, args)


def run_args(args: argparse.Namespace) -> int:
    try:
        result: int = args.handler(args)
        return result
    except (PlanError, SlurmError) as exc:
        print(f"{core_cli.PROG} fleet: error: {exc}", file=sys.stderr)
        return 2
