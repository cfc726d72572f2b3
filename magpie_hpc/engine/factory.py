"""Build engines from the run config, and keep them loaded across shards in one process."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig
from ..models import PromptBuilder, ResolvedModel
from .base import Generator, Scorer


@dataclass(frozen=True)
class TaskRef:
    """Which shard a process works on, for fault injection and logs."""

    stage: str
    domain: str
    shard: int
    attempt: int = 1


def _injected(specs: list[str], task: TaskRef | None) -> bool:
    """`stage:domain:shard` fails every attempt; `stage:domain:shard:N` only the first N."""
    if task is None:
        return False
    for spec in specs:
        parts = spec.split(":")
        if parts[:3] == [task.stage, task.domain, str(task.shard)]:
            return len(parts) < 4 or task.attempt <= int(parts[3])
    return False


def build_generator(
    cfg: RunConfig, model: ResolvedModel, prompts: PromptBuilder, *, seed: int, task: TaskRef | None = None
) -> Generator:
    eng = cfg.engine
    if eng.kind == "synthetic":
        from .synthetic import Misbehaviour, SyntheticGenerator

        marker = prompts.tokenizer(model.template["user_marker"], add_special_tokens=False)["input_ids"]
        misbehaviour = Misbehaviour(
            length_rate=eng.synthetic_length_rate,
            loop_rate=eng.synthetic_loop_rate,
            no_think_rate=eng.synthetic_no_think_rate,
            duplicate_rate=eng.synthetic_duplicate_rate,
            answer_agreement=eng.synthetic_answer_agreement,
        )
        return SyntheticGenerator(
            seed=seed,
            user_marker_ids=marker,
            tokens_per_second=eng.synthetic_tokens_per_second,
            fail=_injected(eng.synthetic_fail, task),
            hang=_injected(eng.synthetic_hang, task),
            misbehaviour=misbehaviour,
            request_seeds=eng.synthetic_request_seeds,
        )
    from ..engine_version import engine_check

    engine_check(cfg, where="task")  # the compute node's vLLM, which the launch may not have seen
    from ..compile_cache import warm_start
    from .vllm_engine import VllmGenerator, compiles

    ft = cfg.fault_tolerance
    # The wait for another task's compile is a quarter of the stall budget: the eager load that
    # follows a wait cut short, and the first chunk, must still fit in the watchdog's stall_seconds.
    with warm_start(
        model.name,
        model.path,
        shared=eng.compile_cache == "shared" and compiles(eng.enforce_eager),
        heartbeat_seconds=ft.heartbeat_seconds,
        stale_seconds=ft.stale_seconds,
        wait_seconds=ft.stall_seconds / 4,
    ) as start:
        return VllmGenerator(
            model.path,
            seed=seed,
            dtype=eng.dtype,
            max_model_len=model.max_model_len,
            tensor_parallel_size=model.tensor_parallel_size,
            gpu_memory_utilization=eng.gpu_memory_utilization,
            enable_prefix_caching=eng.enable_prefix_caching,
            enforce_eager=eng.enforce_eager or (start is not None and start.eager),
            tokenizer=model.tokenizer_path,
            max_num_seqs=_max_num_seqs(cfg, task),
        )


def _max_num_seqs(cfg: RunConfig, task: TaskRef | None) -> int | None:
    from ..roofline import planned_max_num_seqs

    return planned_max_num_seqs(cfg, task.stage, task.domain) if task is not None else cfg.engine.max_num_seqs


def build_scorer(cfg: RunConfig, reward_path: str, *, task: TaskRef | None = None) -> Scorer:
    eng = cfg.engine
    if eng.reward_kind == "synthetic":
        from .synthetic import SyntheticScorer

        return SyntheticScorer(fail=_injected(eng.synthetic_fail, task), hang=_injected(eng.synthetic_hang, task))
    from .reward_engine import TransformersScorer

    return TransformersScorer(
        reward_path, max_length=cfg.rewards.max_length, batch_tokens=cfg.rewards.batch_tokens, dtype=eng.dtype
    )


class EngineCache:
    """One generator and one scorer per process: the local executor loads each model once.

    Only one model is resident at a time, as on a single GPU: asking for the scorer releases the
    generator and the other way round. Fault injection is per task, so a cache never injects.
    """

    def __init__(self) -> None:
        self._generator: Generator | None = None
        self._scorer: Scorer | None = None

    def generator(self, build) -> Generator:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None
        if self._generator is None:
            self._generator = build()
        return self._generator

    def scorer(self, build) -> Scorer:
        if self._generator is not None:
            self._generator.close()
            self._generator = None
        if self._scorer is None:
            self._scorer = build()
        return self._scorer

    def close(self) -> None:
        for engine in (self._generator, self._scorer):
            if engine is not None:
                engine.close()
        self._generator = self._scorer = None
