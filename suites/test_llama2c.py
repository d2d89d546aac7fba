"""llama2.c on this node: models x flag sets x OpenMP threads, tok/s gated against the node's baseline.

The structure of our users' table (model, compiler flags, tok/s), one test per row:

    pytest suites/test_llama2c.py --llmperf-node=sifive                          # compare
    pytest suites/test_llama2c.py --llmperf-node=sifive --llmperf-save-baseline  # record
    pytest suites/test_llama2c.py --llmperf-llama2c-src ~/llama2.c --llmperf-models ~/models \\
        --llmperf-llama2c-models all                                             # real run.c, real models

Without options it builds pytest-llmperf's reference runner and runs synthetic checkpoints of the
published shapes (stories260K and stories15M; stories42M and stories110M with
``--llmperf-llama2c-models all``). Flag sets the compiler rejects (``-march=native`` on RISC-V)
skip; OpenMP builds are swept over ``--llmperf-threads`` (default 1, 2, 4, ... up to the cores),
the others run single-threaded. Each test records ``tok_per_s`` (gated), ``mbu`` (memory-bandwidth
utilisation, informational) and ``peak_rss``. When the checkout has runq.c, the int8 runner runs
on Q8_0 checkpoints too.
"""

import pytest

from pytest_llmperf.llama2c.fixtures import selected_models, selected_threads
from pytest_llmperf.llama2c.session import FLAG_SETS
from pytest_llmperf.native.build import uses_openmp

# time budget per test (seconds, a baseline gets 3x): a 15M run takes a second or two on a small
# board, a 260K run tens of milliseconds. A round (--llmperf-llama2c-round, 0.3 s) is 4 runs of
# 260K here, with the probe or a paired reference build interleaved: 0.5 s probed, 0.7 s paired on
# an idle machine, 1.4 and 2.1 s on a loaded one; 8 s buys the ~10 rounds that make a paired
# verdict on a 5% tolerance decisive here (3 s bought 4-5: noisy). A 15M round is one run, 2.4 s
# here beside a CPU-heavy process (5 s paired): 8 s bought only the 5-round minimum, whose
# distribution-free interval (the range of 5 values) reaches past the tolerance as soon as runs
# scatter by 2-3%, so 15M rows came out noisy in 14 of 20 unchanged paired sessions (bench
# gate_llama2c.py t2); 30 s allows up to 6 paired and 10 probed rounds, and the stop rule still ends
# a test as soon as its verdict is decided. Paired runs get the same budget (the reference takes
# the probe's place; what the paired mode costs more per test is in the llama2c fixture's bench
# docstring)
BUDGET = {"stories260K": 8.0, "stories15M": 30.0, "stories42M": 20.0, "stories110M": 40.0}


def _cases(config, program):
    from pytest_llmperf.llama2c.fixtures import llama2c_session

    if program not in llama2c_session(config).sources:
        reason = "no runq.c: the reference runner stands for run.c only (give --llmperf-llama2c-src with runq.c)"
        return [pytest.param(None, None, None, id="no-runq", marks=pytest.mark.skip(reason=reason))]
    cases = []
    for model in selected_models(config):
        for flag_id, flags in FLAG_SETS.items():
            for threads in (selected_threads(config) if uses_openmp(flags) else [1]):
                cases.append(pytest.param(
                    model, flags, threads, id=f"{model[len('stories'):]}-{flag_id}-t{threads}",
                    marks=pytest.mark.llmperf(max_time=BUDGET[model]),
                ))
    return cases


def pytest_generate_tests(metafunc):
    if {"model", "flags", "threads"} <= set(metafunc.fixturenames):
        program = "runq" if metafunc.function.__name__ == "test_runq" else "run"
        metafunc.parametrize(("model", "flags", "threads"), _cases(metafunc.config, program))


def test_run(llama2c, model, flags, threads):
    """run.c (or the reference runner) in float32."""
    binary = llama2c.build(flags)
    llama2c.bench(binary, llama2c.model(model), threads=threads)


def test_runq(llama2c, model, flags, threads):
    """runq.c on an int8 (Q8_0) checkpoint: only with a llama2.c checkout that has runq.c."""
    if "runq" not in llama2c.session.sources:
        pytest.skip("no runq.c: the reference runner stands for run.c only (give --llmperf-llama2c-src)")
    binary = llama2c.build(flags, program="runq")
    llama2c.bench(binary, llama2c.model(model, quantized=True), threads=threads)
