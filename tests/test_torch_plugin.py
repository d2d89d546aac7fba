"""End-to-end tests of the torch fixtures and suites through pytester (a pytest subprocess per run).

Runs are kept short: the tiny transformer at context 32, the tiny decoder with a few tokens,
``--llmperf-max-time=0.2`` and 3 rounds. Where a test needs a condition this machine does not have
(little free memory, an out-of-memory, a dtype the device cannot do), a conftest.py in the pytester
directory patches the device module, in the subprocess only.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from conftest import run_isolated

torch = pytest.importorskip("torch")

from pytest_llmperf.profilers import perf as _perf  # noqa: E402

# imported here, before any pytester fixture snapshots sys.modules: a module first imported inside
# a pytester test is dropped at its teardown, and importing torch's operator libraries a second time
# in this process fails ("Only a single TORCH_LIBRARY can be used to register the namespace
# c10d_functional") in whatever test imports them next (building a decoder pulls in torch._dynamo)
for _module in ("torch._dynamo", "pytest_llmperf.torch_models.llama", "pytest_llmperf.torch_models.run_decode",
                "pytest_llmperf.torch_models.run_lm", "pytest_llmperf.torch_models.tensor_parallel"):
    importlib.import_module(_module)

# perf on PATH is not enough: kernel.perf_event_paranoid above 2 (Debian's default) forbids it
needs_perf = pytest.mark.skipif(_perf.unavailable_reason() is not None,
                                reason=f"perf not usable here: {_perf.unavailable_reason()}")

REPO = Path(__file__).resolve().parent.parent
FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.2", "--llmperf-min-rounds=3"]
ENV_OPTIONS = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_DEVICE", "LLMPERF_DECODE_CHECKPOINT",
               "LLMPERF_ARTIFACTS", "LLMPERF_CACHE_DIR", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")

# the decode suite's MBU needs the node's bandwidth: a fixed figure from the hook instead of the 1 GiB probe
FIXED_BANDWIDTH = """
def pytest_llmperf_bandwidth(config):
    return {"read_GBps": 10.0, "method": "fixed", "bytes": 2**30}
"""


# one cache directory for the module's runs (pytester gives each run its own HOME): the node's
# bandwidth, which the transformer suite's roofline reads, is probed once, not in every run
SHARED_CACHE: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    SHARED_CACHE[:] = [tmp_path_factory.mktemp("llmperf-cache")]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    cache = [f"--llmperf-cache-dir={SHARED_CACHE[0]}"] if SHARED_CACHE else []
    return run_isolated(pytester, *FAST, *cache, *args, clear=ENV_OPTIONS, timeout=600)


def suite(pytester: pytest.Pytester, name: str) -> None:
    """A copy of suites/<name>.py in the pytester directory (whose conftest.py then applies)."""
    pytester.makepyfile(**{name: (REPO / "suites" / f"{name}.py").read_text()})


def results(path: Path) -> dict:
    """{test id: {metric: metric json}} from a --llmperf-json report."""
    data = json.loads(path.read_text())
    return {r["nodeid"].split("::", 1)[1]: r for r in data["tests"]}


LM_TEST = """
def test_lm(torch_lm):
    out = torch_lm.bench("tiny", "{kind}", precision="{precision}", context=32, batch_size=2)
    assert out["ms_per_step"] > 0
"""


def test_lm_bench_records_metrics_saves_and_compares(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward_backward", precision="fp32"))
    saved = run(pytester, "--llmperf-save-baseline", "--llmperf-device=cpu")
    saved.assert_outcomes(passed=1)
    baseline = pytester.path / "baselines" / "testnode"
    files = [p for p in baseline.rglob("*.json") if p.name != "node-info.json"]
    assert len(files) == 1
    report = pytester.path / "report.json"
    # report-only: whether an unchanged tiny step comes out ok or "regressed" on a noisy 2-core VM
    # is timing, which the test suite does not assert; that it is compared with the saved baseline is
    compared = run(pytester, f"--llmperf-json={report}", "--llmperf-device=cpu", "--llmperf-report-only")
    compared.assert_outcomes(passed=1)
    r = results(report)["test_lm"]
    metrics = r["metrics"]
    assert set(metrics) >= {"ms_per_step", "tok_per_s", "first_step_ms", "peak_mem", "mfu"}
    assert metrics["ms_per_step"]["unit"] == "ms" and metrics["ms_per_step"]["direction"] == "lower"
    assert "gate" not in metrics["ms_per_step"]  # gated
    assert metrics["ms_per_step"]["probe_kind"] == "torch-mm512"
    assert all(metrics[m].get("gate") is False for m in ("tok_per_s", "first_step_ms", "peak_mem", "mfu"))
    # tok/s is batch x context over the step time, round by round
    for ms, rate in zip(metrics["ms_per_step"]["samples"], metrics["tok_per_s"]["samples"]):
        assert rate == pytest.approx(2 * 32 / (ms / 1e3), rel=1e-4)
    # the roofline's step time at the probed peak, and predicted over measured round by round
    pred = metrics["pred_ms_per_step"]
    assert pred["gate"] is False and pred["summary"]["min"] == pred["summary"]["max"] > 0
    for ms, eff in zip(metrics["ms_per_step"]["samples"], metrics["efficiency"]["samples"]):
        assert eff == pytest.approx(100 * pred["samples"][0] / ms, rel=1e-4)
    # and the summary's roofline row: that prediction, on this node's bandwidth and probed peak
    (estimate,) = r["roofline"]
    assert estimate["metric"] == "ms_per_step" and estimate["unit"] == "ms"
    assert estimate["predicted"] == pytest.approx(pred["samples"][0]) and estimate["bound"] in ("compute", "memory")
    assert estimate["device"].startswith("this node: ") and "GB/s" in estimate["device"]
    compared.stdout.fnmatch_lines(["roofline of test_lm.py: ms_per_step (ms) on this node: *GB/s, *TFLOP/s:"])
    compared.stdout.re_match_lines([r"test_lm +\S+ +\S+ +[\d.]+% +(compute|memory)$"])
    statuses = {v["metric"]: v["status"] for v in r["verdicts"]}
    assert statuses["ms_per_step"] in ("ok", "noisy", "improved", "regressed")
    (verdict,) = [v for v in r["verdicts"] if v["metric"] == "ms_per_step"]
    assert verdict["baseline"] is not None and verdict["n_baseline"] >= 3  # compared with the saved rounds
    assert statuses["peak_mem"] == "info"
    compared.stdout.fnmatch_lines(["*warm-up (first round vs steady median):*"])


def test_lm_unknown_size_fails_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm="""
def test_lm(torch_lm):
    torch_lm.bench("huge", "forward")
""")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown model size 'huge' (known: tiny, mini, small, medium, large, xl, 2.7B)*"])


def test_lm_too_big_for_free_memory_skips_before_it_starts(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest
import pytest_llmperf.torch_models.device as dev
import pytest_llmperf.torch_models.transformer as tr

@pytest.fixture(autouse=True)
def _little_memory(monkeypatch):
    monkeypatch.setattr(dev, "available_memory", lambda device: 2 * 2**20)
    def no_build(*a, **k):
        raise AssertionError("the model was built")
    monkeypatch.setattr(tr, "build_model", no_build)
""")
    pytester.makepyfile(test_lm=LM_TEST.format(kind="train_step", precision="fp32"))
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*size tiny, train_step, fp32, context 32, batch 2 needs about * MiB (params *"
                                 "optimizer *); cpu has 2 MiB free*"])


def test_out_of_memory_fails_that_test_only_and_the_next_runs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest
import torch
import pytest_llmperf.torch_models.transformer as tr

real = tr.make_step

@pytest.fixture(autouse=True)
def _oom_in_first(request, monkeypatch):
    if request.node.name == "test_a":
        def step_that_ooms(*a, **k):
            def step():
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return step
        monkeypatch.setattr(tr, "make_step", step_that_ooms)
""")
    pytester.makepyfile(test_lm="""
def test_a(torch_lm):
    torch_lm.bench("tiny", "forward", context=32, batch_size=2)

def test_b(torch_lm):
    torch_lm.bench("tiny", "forward", context=32, batch_size=2)
""")
    result = run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*llmperf: out of memory on cpu (size tiny, forward, fp32, context 32, batch 2): "
                                 "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB*"])
    assert "Traceback" not in result.stdout.str()


def test_dtype_the_device_cannot_do_skips_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest
import pytest_llmperf.torch_models.device as dev

@pytest.fixture(autouse=True)
def _no_bf16(monkeypatch):
    def check(device, dtype):
        raise dev.DtypeUnsupported(f"device {device} cannot compute in {dev.dtype_name(dtype)}: simulated")
    monkeypatch.setattr(dev, "check_dtype", check)
""")
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward", precision="bf16"))
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*device cpu cannot compute in bf16: simulated*"])


def test_cuda_asked_for_without_a_gpu_fails_naming_it(pytester: pytest.Pytester) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward", precision="fp32"))
    result = run(pytester, "--llmperf-device=cuda")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: --llmperf-device: device 'cuda' is not available*"])


@pytest.mark.parametrize("option, message", [
    ("--llmperf-device=tpu", "--llmperf-device: unknown device 'tpu' (use auto, cpu, cuda, cuda:N or mps)"),
    ("--llmperf-lm-sizes=tiny,huge", "--llmperf-lm-sizes: unknown value 'huge' (known: tiny, mini, small, *"),
    ("--llmperf-lm-contexts=128,x", "--llmperf-lm-contexts: expected positive whole numbers like 128,256; got '128,x'"),
    ("--llmperf-lm-passes=backward", "--llmperf-lm-passes: unknown value 'backward' (known: forward, *"),
    ("--llmperf-precisions=int4", "--llmperf-precisions: unknown value 'int4' (known: fp32, bf16, fp16)"),
    ("--llmperf-torch-threads=0", "--llmperf-torch-threads: expected positive whole numbers like 128,256; got '0'"),
    ("--llmperf-lm-compile=maybe", "--llmperf-lm-compile: invalid value 'maybe' (use off, on or both)"),
    ("--llmperf-decode-variants=eager,beam", "--llmperf-decode-variants: unknown value 'beam' (known: eager, *"),
    ("--llmperf-decode-model=gpt5", "--llmperf-decode-model: unknown value 'gpt5' (known: tiny, stories15M, *"),
    ("--llmperf-decode-tokens=1", "--llmperf-decode-tokens: need at least 2 tokens*"),
    ("--llmperf-profile=vtune", "*--llmperf-profile: unknown profiler 'vtune' (known: torch*"),
])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, option: str, message: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_transformer_suite_grid_from_options(pytester: pytest.Pytester) -> None:
    suite(pytester, "test_transformer")
    result = run(pytester, "test_transformer.py", "--collect-only", "-q",
                 "--llmperf-lm-sizes=tiny,small", "--llmperf-lm-contexts=64", "--llmperf-lm-passes=forward",
                 "--llmperf-precisions=bf16", "--llmperf-lm-compile=both")
    ids = sorted(line.split("[", 1)[1].rstrip("]") for line in result.outlines if "::test_transformer[" in line)
    assert ids == ["small-fwd-bf16-ctx64", "small-fwd-bf16-ctx64-compiled",
                   "tiny-fwd-bf16-ctx64", "tiny-fwd-bf16-ctx64-compiled"]


DECODE = ["--llmperf-decode-model=tiny", "--llmperf-decode-tokens=6", "--llmperf-device=cpu"]


def test_decode_suite_variants(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FIXED_BANDWIDTH)
    suite(pytester, "test_decode")
    report = pytester.path / "report.json"
    result = run(pytester, "test_decode.py", *DECODE, "-rs", f"--llmperf-json={report}",
                 "--llmperf-decode-variants=eager,int8,speculative,tp", "--llmperf-speculate-k=3")
    result.assert_outcomes(passed=3, skipped=1)
    # the reason names what this node has (no GPU here; on a GPU node, how many it has)
    from pytest_llmperf.torch_models.tensor_parallel import tp_unavailable_reason

    result.stdout.fnmatch_lines([f"*{tp_unavailable_reason('cpu')}*"])
    r = results(report)
    eager = r["test_decode[eager]"]["metrics"]
    assert set(eager) >= {"decode_tok_per_s", "ttft_ms", "ms_per_token", "peak_mem", "mbu"}
    assert "gate" not in eager["decode_tok_per_s"] and eager["decode_tok_per_s"]["direction"] == "higher"
    # MBU = weight bytes per token x tok/s / bandwidth (10 GB/s, fixed by the conftest)
    from pytest_llmperf.torch_models.llama import build_llama, get_decode_config, weight_bytes_per_token

    per_token = weight_bytes_per_token(build_llama(get_decode_config("tiny")))
    for rate, mbu in zip(eager["decode_tok_per_s"]["samples"], eager["mbu"]["samples"]):
        assert mbu == pytest.approx(100 * per_token * rate / 10e9, rel=1e-4)
    # the roofline's decode rate from that bandwidth and the matmul peak, and measured over predicted
    pred = eager["pred_tok_per_s"]
    assert pred["gate"] is False and pred["summary"]["min"] == pred["summary"]["max"] > 0
    for rate, eff in zip(eager["decode_tok_per_s"]["samples"], eager["efficiency"]["samples"]):
        assert eff == pytest.approx(100 * rate / pred["samples"][0], rel=1e-4)
    (estimate,) = r["test_decode[eager]"]["roofline"]
    assert estimate["metric"] == "decode_tok_per_s" and estimate["predicted"] == pytest.approx(pred["samples"][0])
    assert estimate["device"].startswith("this node: 10.0 GB/s")
    int8 = r["test_decode[int8]"]["metrics"]
    assert int8["pred_tok_per_s"]["samples"][0] > pred["samples"][0]  # int8 weights: fewer bytes per token
    assert "roofline" not in r["test_decode[speculative]"]  # no prediction of speculative decoding
    ratio = int8["mbu"]["samples"][0] / int8["decode_tok_per_s"]["samples"][0]
    assert ratio < 0.5 * eager["mbu"]["samples"][0] / eager["decode_tok_per_s"]["samples"][0]  # int8 reads less
    spec = r["test_decode[speculative]"]["metrics"]
    # the default draft is an int8 copy of the target: it agrees with the target most of the time
    assert "mbu" not in spec and spec["acceptance"]["unit"] == "%"
    assert 50 <= min(spec["acceptance"]["samples"]) <= 100


def test_decode_checkpoint_that_does_not_exist_fails_naming_it(pytester: pytest.Pytester) -> None:
    missing = pytester.path / "nowhere" / "stories15M.bin"
    pytester.makepyfile(test_d="def test_d(torch_decode):\n    torch_decode.bench('eager')\n")
    result = run(pytester, *DECODE, f"--llmperf-decode-checkpoint={missing}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*--llmperf-decode-checkpoint:*{missing}*"])


def test_decode_from_a_llama2c_checkpoint(pytester: pytest.Pytester) -> None:
    from pytest_llmperf.llama2c.models import ModelConfig, write_checkpoint

    path = pytester.path / "small.bin"
    write_checkpoint(path, ModelConfig(dim=64, hidden_dim=172, n_layers=2, n_heads=4, n_kv_heads=4,
                                       vocab_size=512, seq_len=128))
    pytester.makeconftest(FIXED_BANDWIDTH)
    pytester.makepyfile(test_d="""
def test_d(torch_decode):
    out = torch_decode.bench('eager')
    assert len(out["tokens"]) == 6
    assert out["weight_bytes_per_token"] > 64 * 172 * 3 * 2 * 4
""")
    result = run(pytester, *DECODE, f"--llmperf-decode-checkpoint={path}")
    result.assert_outcomes(passed=1)


def test_torch_profile_writes_artifacts_and_the_summary_says_where(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward", precision="fp32"))
    artifacts = pytester.path / "arts"
    result = run(pytester, "--llmperf-profile=torch", "--llmperf-profile-steps=2", f"--llmperf-artifacts={artifacts}")
    result.assert_outcomes(passed=1)
    folder = artifacts / "testnode" / "test_lm.py--test_lm"
    assert sorted(p.name for p in folder.iterdir()) == ["torch-profile.json", "torch-profile.txt"]
    data = json.loads((folder / "torch-profile.json").read_text())
    assert data["steps"] == 2 and any(row["name"].startswith("aten::") for row in data["rows"])
    result.stdout.fnmatch_lines([f"llmperf: profiler outputs in {artifacts}:",
                                 "  test_lm.py::test_lm [[]torch.profiler[]] size tiny, forward*of self CPU time",
                                 f"      {folder / 'torch-profile.txt'}"])


@needs_perf
def test_process_profilers_wrap_run_lm_in_a_process_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward", precision="fp32"))
    report = pytester.path / "report.json"
    result = run(pytester, "--llmperf-profile=perf-stat,instructions", "--llmperf-profile-runs=1",
                 "--llmperf-profile-steps=2", f"--llmperf-json={report}", "--llmperf-device=cpu")
    result.assert_outcomes(passed=1)
    (test,) = results(report).values()
    m = test["metrics"]
    assert len(m["perf.task-clock"]["samples"]) == 1 and m["perf.task-clock"]["gate"] is False  # 1 run: info
    assert "instructions" not in m
    kinds = {a["kind"]: a for a in test["artifacts"]}
    assert "compiled binaries" in kinds["instructions"]["details"]["skipped"]
    folder = pytester.path / "llmperf-artifacts" / "testnode" / "test_lm.py--test_lm"
    (csv,) = folder.glob("*.perf-stat.csv")
    assert csv.name.startswith("python")
    result.stdout.fnmatch_lines(["llmperf: profiler instructions skipped in 1 test(s): *compiled binaries*"])


@needs_perf
def test_process_profilers_wrap_run_decode(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FIXED_BANDWIDTH)
    pytester.makepyfile(test_d="def test_d(torch_decode):\n    torch_decode.bench('speculative')\n")
    report = pytester.path / "report.json"
    result = run(pytester, *DECODE, "--llmperf-profile=perf-record", "--llmperf-profile-steps=1",
                 "--llmperf-speculate-k=2", f"--llmperf-json={report}")
    result.assert_outcomes(passed=1)
    (test,) = results(report).values()
    (art,) = [a for a in test["artifacts"] if a["kind"] == "perf-record"]
    assert art["details"]["samples"] > 0 and art["details"]["top_symbols"]
    assert art["paths"][0].endswith("-perf-record.perf.data") and Path(art["paths"][0]).is_file()
    assert "decode_tok_per_s" in test["metrics"]  # the timed rounds are untouched


def test_run_decode_runs_the_fixtures_decoding(capsys) -> None:
    from pytest_llmperf.torch_models import run_decode
    from pytest_llmperf.torch_models.options import DEFAULT_PROMPT_TOKENS

    assert run_decode.main(["--model", "tiny", "--variant", "speculative", "--draft", "int8", "--k", "2",
                            "--tokens", "4", "--generations", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llmperf run_decode: 2 generations, ") and out.rstrip().endswith("tok/s")
    prompt = run_decode.fixed_prompt(512, DEFAULT_PROMPT_TOKENS)
    assert prompt[0] == 1 and len(prompt) == DEFAULT_PROMPT_TOKENS and all(3 <= t < 512 for t in prompt[1:])
    with pytest.raises(SystemExit):
        run_decode.main(["--variant", "tp"])


def test_run_lm_runs_the_fixtures_workload(capsys) -> None:
    from pytest_llmperf.torch_models import run_lm

    assert run_lm.main(["--size", "tiny", "--kind", "forward_backward", "--context", "16", "--batch", "1",
                        "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llmperf run_lm: 2 steps, ") and out.rstrip().endswith("ms per step")
    with pytest.raises(SystemExit):
        run_lm.main(["--size", "tiny", "--kind", "sideways"])


def test_without_profile_option_nothing_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lm=LM_TEST.format(kind="forward", precision="fp32"))
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "llmperf-artifacts").exists()
    assert "profiler outputs" not in result.stdout.str()


def test_without_torch_the_suites_and_fixtures_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    fake = pytester.path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch (fake)')\n")
    pytester.makepyfile(test_f="def test_f(torch_decode):\n    pass\n")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("PYTHONPATH", str(fake.parent))
        suite(pytester, "test_transformer")
        suite(pytester, "test_decode")
        result = run(pytester, "test_transformer.py", "test_decode.py", "test_f.py", "-rs")
    finally:
        mp.undo()
    result.assert_outcomes(skipped=3)
    assert result.stdout.str().count("torch is not installed: pip install 'pytest-llmperf[torch]'") == 3
    assert result.ret == 0


def test_torch_threads_option_sets_torch_threads(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_t="""
import torch

def test_t(torch_device):
    assert torch.get_num_threads() == 1
""")
    run(pytester, "--llmperf-torch-threads=1").assert_outcomes(passed=1)
