"""The pipeline: one list of stage specifications that everything else walks.

The planner (shard counts, GPU-hours), both executors (local order, SLURM arrays and their
dependencies), status, the run summary, damage checks and the merge read the stages from
`PIPELINE` and ask a stage's spec what they need to know; none of them lists stages of its own.
Adding a stage is one `StageSpec` here plus its work module under `stages/` (a `ShardWork`
subclass); see the README's "How to add a stage".

Stage names appear as string literals only here and in each stage's own module: other modules
use the constants below, or better, the spec's attributes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the config imports this module's names; only types go the other way
    from .config import RunConfig
    from .stages.base import ShardWork

INSTRUCTIONS = "instructions"
SELECT = "select"
RESPONSES = "responses"
MULTI_RESPONSES = "multi_responses"
REWARDS = "rewards"
MERGE = "merge"  # not a shard stage: one job after all of them (merge/)
MERGE_KEY = (MERGE, "all", 0)  # how the merge is keyed beside (stage, domain, shard) keys

Dependency = Literal["afterok", "aftercorr"]
Engine = Literal["generator", "scorer"]


@dataclass(frozen=True)
class StageSpec:
    """What the orchestration needs to know of a stage; what it computes is its work class's business."""

    name: str
    work: (
        str  # "module:Class" under magpie_hpc.stages, imported when first needed (the work modules import the planner)
    )
    record_unit: str  # what one of its records is, for status and the run summary
    upstream: str | None = None  # the stage whose committed output it reads
    # afterok: waits for the whole upstream array; aftercorr: task i waits for upstream task i
    # only (same shard ranges, so the same sharding key)
    dependency: Dependency | None = None
    engine: Engine | None = None  # which model a task loads, if any; a stage with one runs on GPUs
    sharding: str | None = None  # the [sharding] key that sizes its shards; None: one shard per domain
    # a finished request of an open chunk is kept (journal.py) so a restart does not redo it:
    # worth it where requests are long
    journaled: bool = False
    responds: bool = False  # answers the problems: its cut-off responses are GPU time thrown away
    # holds its own copy of what it read (select copies the instructions it chose): a redone
    # upstream shard leaves it valid, so damage does not travel past it (damage.py)
    copies_upstream: bool = False
    # per request: the token budget (generation stages), and the requests (samples) per problem
    max_tokens: Callable[[RunConfig, str], int] | None = None
    samples: Callable[[RunConfig], float] = lambda cfg: 1

    @property
    def gpu(self) -> bool:
        return self.engine is not None

    @property
    def generates(self) -> bool:
        return self.engine == "generator"

    def work_class(self) -> type[ShardWork]:
        module, _, name = self.work.partition(":")
        return getattr(importlib.import_module(f"magpie_hpc.stages.{module}"), name)


def _instruction_samples(cfg: RunConfig) -> float:
    """Candidates generated per kept instruction: the oversample margin over the planned keep rate."""
    return (1 + cfg.instructions.oversample) / cfg.throughput.keep_rate


PIPELINE: tuple[StageSpec, ...] = (
    StageSpec(
        INSTRUCTIONS,
        "instructions:InstructionsWork",
        "clean instructions",
        engine="generator",
        sharding=INSTRUCTIONS,
        max_tokens=lambda cfg, d: cfg.domain(d).max_tokens_instruction,
        samples=_instruction_samples,
    ),
    StageSpec(
        SELECT, "select:SelectWork", "problems", upstream=INSTRUCTIONS, dependency="afterok", copies_upstream=True
    ),
    StageSpec(
        RESPONSES,
        "responses:ResponsesWork",
        "problems",
        upstream=SELECT,
        dependency="afterok",
        engine="generator",
        sharding=RESPONSES,
        journaled=True,
        responds=True,
        max_tokens=lambda cfg, d: cfg.domain(d).max_tokens_response,
    ),
    StageSpec(
        MULTI_RESPONSES,
        "responses:MultiResponsesWork",
        "problems",
        upstream=SELECT,
        dependency="afterok",
        engine="generator",
        sharding=MULTI_RESPONSES,
        journaled=True,
        responds=True,
        max_tokens=lambda cfg, d: cfg.multi_responses.max_tokens,
        samples=lambda cfg: cfg.multi_responses.num_responses,
    ),
    StageSpec(
        REWARDS,
        "rewards:RewardsWork",
        "problems",
        upstream=MULTI_RESPONSES,
        dependency="aftercorr",
        engine="scorer",
        sharding=MULTI_RESPONSES,
        samples=lambda cfg: cfg.multi_responses.num_responses,
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in PIPELINE)
_BY_NAME = {s.name: s for s in PIPELINE}


def stage(name: str) -> StageSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; the pipeline has {', '.join(STAGE_NAMES)}") from None


def gpu_stages() -> tuple[StageSpec, ...]:
    return tuple(s for s in PIPELINE if s.gpu)


def generation_stages() -> tuple[StageSpec, ...]:
    return tuple(s for s in PIPELINE if s.generates)


def rebuilt_with(name: str) -> list[tuple[StageSpec, bool]]:
    """The stages to redo when a shard of `name` is redone (they were built on its old output),
    each with whether only the same shard is affected (an `aftercorr` chain: same ranges) or all of
    the domain's shards."""
    same_shard = {name: True}
    for spec in PIPELINE:  # pipeline order lists a stage after its upstream
        if spec.upstream in same_shard and not spec.copies_upstream:
            same_shard[spec.name] = spec.dependency == "aftercorr" and same_shard[spec.upstream]
    return [(stage(n), same) for n, same in same_shard.items() if n != name]
