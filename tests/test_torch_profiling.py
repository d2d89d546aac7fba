"""Behaviour of pytest_llmperf.torch_models.profiling on the CPU, plus the GPU ranking rules on a
hand-made result."""

from __future__ import annotations

import json
import re

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.torch_models.profiling import ProfileResult, load_profile_json, profile_steps  # noqa: E402


@pytest.fixture(scope="module")
def matmul_profile():
    a = torch.randn(96, 96)
    b = torch.randn(96, 96)
    calls = []

    def step():
        calls.append(1)
        torch.mm(a, b)
        torch.mm(b, a)
        return torch.softmax(a, dim=-1)

    result = profile_steps(step, torch.device("cpu"), steps=3, warmup=2)
    return result, calls


def test_profile_counts_the_profiled_steps_only(matmul_profile):
    result, calls = matmul_profile
    assert len(calls) == 2 + 3
    by_name = {row["name"]: row for row in result.rows}
    assert "aten::mm" in by_name
    assert by_name["aten::mm"]["calls"] == 3 * 2
    assert result.steps == 3 and result.warmup == 2
    assert result.device_type == "cpu"


def test_profile_rows_and_totals_on_cpu(matmul_profile):
    result, _ = matmul_profile
    keys = {"name", "calls", "self_cpu_us", "cpu_total_us", "self_device_us", "device_total_us"}
    for row in result.rows:
        assert keys <= set(row)
        assert row["self_device_us"] == 0 and row["device_total_us"] == 0
        assert row["cpu_total_us"] >= row["self_cpu_us"] >= 0
    assert result.self_device_total_us == 0
    assert result.self_cpu_total_us == pytest.approx(sum(r["self_cpu_us"] for r in result.rows))
    assert "aten::mm" in result.table and "Self CPU" in result.table


def test_top_and_summary_line(matmul_profile):
    result, _ = matmul_profile
    top = result.top(3)
    assert 1 <= len(top) <= 3
    times = [row["self_cpu_us"] for row in top]
    assert times == sorted(times, reverse=True)
    assert sum(row["percent"] for row in top) <= 100.0 + 1e-6
    assert top[0]["name"] == max(result.rows, key=lambda r: r["self_cpu_us"])["name"]
    line = result.summary_line(3)
    assert re.fullmatch(r"\S+ \d+\.\d%(, \S+ \d+\.\d%){0,2} of self CPU time", line), line
    assert line.startswith(f"{top[0]['name']} {top[0]['percent']:.1f}%")


def test_save_and_load_round_trip(matmul_profile, tmp_path):
    result, _ = matmul_profile
    target = tmp_path / "deep" / "dir"
    paths = result.save(target, stem="step-profile")
    assert [p.name for p in paths] == ["step-profile.txt", "step-profile.json"]
    assert all(p.is_file() for p in paths)
    text = paths[0].read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert "cpu" in header and "3 profiled step" in header
    assert "aten::mm" in text
    data = json.loads(paths[1].read_text(encoding="utf-8"))
    assert data["steps"] == 3 and isinstance(data["rows"], list)
    loaded = load_profile_json(paths[1])
    assert loaded == result
    assert loaded.summary_line() == result.summary_line()
    assert not list(target.glob("*.tmp"))


def test_load_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ValueError):
        load_profile_json(path)


def test_steps_must_be_positive():
    with pytest.raises(ValueError):
        profile_steps(lambda: None, "cpu", steps=0)


def test_record_shapes_and_memory_options():
    a = torch.randn(32, 32)
    result = profile_steps(lambda: torch.mm(a, a), "cpu", steps=2, warmup=0,
                           record_shapes=True, profile_memory=True)
    mm = next(row for row in result.rows if row["name"] == "aten::mm")
    assert mm["calls"] == 2
    assert mm["self_cpu_memory_bytes"] >= 2 * 32 * 32 * 4  # one 32x32 fp32 output per call
    assert "[32, 32]" in result.table


def _gpu_like_result() -> ProfileResult:
    def row(name, self_cpu, self_dev, on_device):
        return {"name": name, "calls": 3, "self_cpu_us": self_cpu, "cpu_total_us": self_cpu,
                "self_device_us": self_dev, "device_total_us": self_dev, "on_device": on_device}

    rows = [
        row("aten::addmm", 50.0, 600.0, False),
        row("aten::bmm", 40.0, 300.0, False),
        row("aten::_softmax", 20.0, 100.0, False),
        row("aten::linear", 10.0, 0.0, False),
        row("sm90_xmma_gemm_bf16bf16_bf16f32", 0.0, 600.0, True),
        row("batched_gemm_kernel", 0.0, 300.0, True),
        row("softmax_warp_forward", 0.0, 100.0, True),
    ]
    return ProfileResult(rows=rows, self_cpu_total_us=120.0, self_device_total_us=1000.0,
                         device_type="cuda", steps=3, table="", device="cuda:0")


def test_gpu_ranking_uses_device_time_of_operators():
    result = _gpu_like_result()
    assert [r["name"] for r in result.top(3)] == ["aten::addmm", "aten::bmm", "aten::_softmax"]
    assert result.summary_line(3) == "aten::addmm 60.0%, aten::bmm 30.0%, aten::_softmax 10.0% of self CUDA time"
