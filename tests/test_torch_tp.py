"""Tensor parallelism of the Llama decoder: two gloo processes on the CPU against one unsharded
model, and the checks that need no process group."""

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.torch_models import llama  # noqa: E402
from pytest_llmperf.torch_models import tensor_parallel as tp  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

PROMPT = [1, 17, 42, 99, 3]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """One torch thread for this module (see conftest.one_torch_thread)."""


def test_two_gloo_ranks_equal_the_unsharded_model():
    reference = tp.reference_run(llama.build_llama(llama.get_decode_config("tiny"), seed=0),
                                 PROMPT, steps=8)
    sharded = tp.run_tp_check(world_size=2, size="tiny", seed=0, prompt=PROMPT, steps=8)
    assert sharded["tokens"] == reference["tokens"] and len(sharded["tokens"]) == 9
    assert sharded["logits"].shape == (9, 512)
    torch.testing.assert_close(sharded["logits"], reference["logits"], atol=1e-4, rtol=1e-4)


def test_two_gloo_ranks_int8():
    from pytest_llmperf.torch_models.quantize import quantize_int8_

    model = quantize_int8_(llama.build_llama(llama.get_decode_config("tiny"), seed=3))
    reference = tp.reference_run(model, PROMPT, steps=5)
    sharded = tp.run_tp_check(world_size=2, size="tiny", seed=3, prompt=PROMPT, steps=5,
                              quantize=True)
    assert sharded["tokens"] == reference["tokens"]
    torch.testing.assert_close(sharded["logits"], reference["logits"], atol=1e-4, rtol=1e-4)


def test_tp_decode_benchmark_on_cpu_ranks():
    from pytest_llmperf.torch_models import generate as gen

    result = tp.run_tp_decode("tiny", tokens=12, dtype_name="fp32", device_type="cpu", rounds=2,
                              warmup=1)
    assert result["world_size"] == 2 and len(result["decode_tok_per_s"]) == 2
    assert all(rate > 0 for rate in result["decode_tok_per_s"]) and len(result["ttft_ms"]) == 2
    model = llama.build_llama(llama.get_decode_config("tiny"), seed=0)
    assert result["tokens"] == gen.generate(model, tp._bench_prompt(512, 8), 12).tokens
    # each rank reads its half of the block weights and all of the replicated ones
    assert result["weight_bytes_per_token_per_rank"] < llama.weight_bytes_per_token(model)
    with pytest.raises(ValueError, match="n_heads 4 is not a multiple of 3"):
        tp.run_tp_decode("tiny", device_type="cpu", world_size=3)


def test_tp_unavailable_reason_on_cpu():
    reason = tp.tp_unavailable_reason("cpu")
    assert isinstance(reason, str) and "GPU" in reason
    if not torch.cuda.is_available():
        assert tp.tp_unavailable_reason("cuda") == "no CUDA GPU"


@pytest.mark.parametrize("world_size, field", [(3, "n_heads 4"), (4, "n_kv_heads 2")])
def test_shard_rejects_indivisible_heads(world_size, field):
    model = llama.build_llama(llama.get_decode_config("tiny"))
    with pytest.raises(ValueError, match=f"over {world_size} ranks: {field} is not a multiple"):
        tp.shard_(model, 0, world_size)
    with pytest.raises(ValueError, match="rank 2 is not in 0..1"):
        tp.shard_(model, 2, 2)


def test_shard_slices_weights_and_cache():
    full = llama.build_llama(llama.get_decode_config("tiny"), seed=0)
    model = llama.build_llama(llama.get_decode_config("tiny"), seed=0)
    model.setup_caches(1, 32)
    tp.shard_(model, 1, 2)
    att, ffn = model.layers[0].attention, model.layers[0].feed_forward
    ref_att, ref_ffn = full.layers[0].attention, full.layers[0].feed_forward
    assert (att.n_heads, att.n_kv_heads) == (2, 1)
    assert torch.equal(att.wq.weight, ref_att.wq.weight[32:64])  # query heads 2 and 3
    assert torch.equal(att.wk.weight, ref_att.wk.weight[16:32])  # kv head 1
    assert torch.equal(att.wo.weight, ref_att.wo.weight[:, 32:64])
    assert torch.equal(ffn.w1.weight, ref_ffn.w1.weight[86:172])
    assert torch.equal(ffn.w2.weight, ref_ffn.w2.weight[:, 86:172])
    assert torch.equal(model.output.weight, full.output.weight)  # replicated
    assert att.kv_cache.k_cache.shape == (1, 1, 32, 16)  # the local kv heads only
    with pytest.raises(ValueError, match="already sharded"):
        tp.shard_(model, 1, 2)
