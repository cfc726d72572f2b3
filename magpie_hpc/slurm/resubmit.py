"""Resubmit what preemption, failures or cancelled dependencies left undone, and only that.

A shard is resubmitted when it has no done marker, no task of it is pending or running, and it
has not reached its attempt cap. Dependents stuck on DependencyNeverSatisfied are cancelled and
resubmitted on the new job ids. Running it twice in a row submits nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..context import RunContext
from ..pipeline import MERGE_KEY, STAGE_NAMES
from ..plan import stage_shards
from . import cluster, states as slurm_states
from .accounting import shard_states
from .submit import Piece, SubmitPlan, Submitter

log = logging.getLogger("magpie_hpc")


@dataclass
class Resubmission:
    pieces: list[Piece] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # stuck dependents
    failed: list[str] = field(default_factory=list)  # shards past their attempt cap
    active: int = 0  # tasks still pending or running, left alone
    source: str = "none"
    repaired: list[str] = field(default_factory=list)  # damaged chunks moved aside, their shards redone


def _stuck(reason: str) -> bool:
    return "DependencyNeverSatisfied" in reason


def resubmit(ctx: RunContext, *, submitter: Submitter | None = None) -> Resubmission:
    from ..damage import repair_damaged

    store, view, cfg = ctx.store, ctx.view, ctx.cfg
    found = shard_states(store)
    states = found.shards
    result = Resubmission(source=found.source)
    # A done shard whose chunks no longer match their records is not done: move them aside (never
    # deleted) and its DONE.json with them, so the loop below submits it again.
    result.repaired = repair_damaged(ctx)
    stuck = sorted({s.job_id for s in states.values() if s.state == slurm_states.PENDING and _stuck(s.reason)})
    if stuck:
        cluster.scancel(stuck)
        result.cancelled = stuck
    todo: dict[tuple[str, str], list[int]] = {}
    active: dict[tuple[str, str], list[str]] = {}
    for stage in STAGE_NAMES:
        for domain in cfg.domains:
            for shard in stage_shards(cfg, stage, domain):
                disk = view.shard(stage, domain, shard.shard, progress=False)
                if disk.done is not None:
                    continue
                state = states.get((stage, domain, shard.shard))
                if state is not None and state.active and state.job_id not in stuck:
                    ids = active.setdefault((stage, domain), [])
                    if state.array_job_id not in ids:
                        ids.append(state.array_job_id)
                    result.active += 1
                    continue
                if len(disk.counted_starts) >= cfg.fault_tolerance.max_attempts:
                    result.failed.append(f"{stage} {domain} shard {shard.shard}")
                    continue
                todo.setdefault((stage, domain), []).append(shard.shard)
    merge_state = states.get(MERGE_KEY)
    merge_done = view.merged() is not None
    merge_active = merge_state is not None and merge_state.active and merge_state.job_id not in stuck
    if todo and merge_active:
        # The queued merge waits on the old jobs only; replace it with one that waits on the new ones.
        cluster.scancel([merge_state.job_id])
        result.cancelled.append(merge_state.job_id)
        merge_active = False
    need_merge = not merge_done and not merge_active and not result.failed
    if todo or need_merge:
        plan = SubmitPlan(todo=todo, active=active, merge=need_merge)
        result.pieces = (submitter or Submitter(ctx)).submit(plan)
    return result
