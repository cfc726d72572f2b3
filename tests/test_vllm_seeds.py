"""vLLM's SamplingParams per prompt: each Magpie request its own seed on a GPU, none on the CPU build.
No model is loaded (the engine's SamplingParams alone); after test_vllm_pipeline.py in file order,
so the suite imports vllm once, where it would anyway."""

from __future__ import annotations

from magpie_hpc.engine import Sampling

MAGPIE = [1, 2, 3, 7, 8]


def test_vllm_engine_gives_each_prompt_its_seed_and_drops_them_on_cpu():
    from vllm.v1.engine.parallel_sampling import ParentRequest

    from magpie_hpc.engine.vllm_engine import VllmGenerator

    engine = VllmGenerator.__new__(VllmGenerator)  # no model: only the SamplingParams it builds
    sampling = Sampling(temperature=1.0, top_p=1.0, max_tokens=8, n=4, seed=7)
    engine.on_cpu = False
    params = engine.prompt_params([MAGPIE] * 3, sampling, [100, 104, 108])
    assert [p.seed for p in params] == [100, 104, 108] and {p.n for p in params} == {4}
    assert [p.seed for p in engine.prompt_params([MAGPIE] * 2, sampling, None)] == [7, 7]
    # What the ranges rely on: vLLM gives child k of a request the seed seed + k.
    parent = ParentRequest.__new__(ParentRequest)
    parent.sampling_params, parent.cached_child_sampling_params = params[1], None
    assert [parent._get_child_sampling_params(k).seed for k in range(4)] == [104, 105, 106, 107]
    engine.on_cpu = True  # the CPU build rejects per-request seeds: the engine-level seed decides
    assert [p.seed for p in engine.prompt_params([MAGPIE] * 3, sampling, [100, 104, 108])] == [None] * 3
