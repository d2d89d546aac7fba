"""The fleet: one command submits the suites to many nodes through SLURM, waits for the jobs and
gathers one report (``pytest-llmperf fleet run|save-baseline|report``).

No pytest here: each job runs pytest on its node as a process; this package talks to SLURM through
its standard command-line tools (sbatch --parsable, squeue, scontrol, sacct, scancel, sinfo) and
reads what the jobs wrote into a results directory on the shared file system.

    slurm.py    the SLURM tools: one runner, and parsers of their machine-readable output
    plan.py     the nodes a command names, the job script, the run's state file (resume)
    wait.py     waiting for the jobs: progress, node down, time limit, cancel on interrupt
    gather.py   each node's outcome, and the nodes x tests matrix
    render.py   the matrix in the terminal, Markdown and JSON (and the HTML report)
    cli.py      the ``fleet`` subcommands
"""
