"""Damaged shards of a run: found by every reader (status, merge), redone by `resubmit` and
`launch --resume`.

A done shard is damaged when one of its committed chunks no longer matches the row count, size and
sha256 recorded when it was committed (store.py). Redoing it moves the bad chunk (and every chunk
after it, which may have been built on it) aside, never deleting anything, and moves the shard's
DONE.json aside so it runs again. Shards built from the damaged one are redone too: every response,
multi-response and reward shard of a domain whose select shard was damaged, the reward shard of a
damaged multi-response shard, and the merge. (A damaged instruction shard is redone alone: the
select shard already holds its own copy of the instructions it chose.)
"""

from __future__ import annotations

from .pipeline import MERGE_KEY, STAGE_NAMES, rebuilt_with
from .plan import stage_shards
from .store import RunStore


def run_damage(ctx, *, full: bool = True) -> dict[tuple[str, str, int], list[tuple[int | None, str]]]:
    """Every damaged done shard of the run -> its problems (chunk index or None, message)."""
    found = {}
    for stage in STAGE_NAMES:
        for domain in ctx.cfg.domains:
            for rng in stage_shards(ctx.cfg, stage, domain):
                report = ctx.store.shard(stage, domain, rng.shard).damage_report(full=full)
                if report:
                    found[(stage, domain, rng.shard)] = report
    return found


def _dependents(ctx, stage: str, domain: str, shard: int) -> list[tuple[str, str, int]]:
    return [
        (spec.name, domain, r.shard)
        for spec, same_shard in rebuilt_with(stage)
        for r in stage_shards(ctx.cfg, spec.name, domain)
        if not same_shard or r.shard == shard
    ]


def repair_damaged(ctx) -> list[str]:
    """Set aside what is damaged (and what was built on it) so that the shards are redone; returns
    one message per damaged file. Nothing is deleted."""
    store: RunStore = ctx.store
    damaged = run_damage(ctx)
    messages = []
    redo: dict[tuple[str, str, int], int | None] = {}
    for key, report in damaged.items():
        messages += [message for _, message in report]
        indices = [i for i, _ in report if i is not None]
        first = min(indices) if indices else None
        if key in redo:  # also built on a damaged shard: redo it whole
            first = 0
        redo[key] = first
        for dep in _dependents(ctx, *key):
            redo[dep] = 0
    for (stage, domain, shard), first in redo.items():
        shard_store = store.shard(stage, domain, shard)
        if first is not None and shard_store.committed_indices():
            shard_store.set_aside_chunks(
                first, "damaged" if (stage, domain, shard) in damaged else "built on a damaged shard"
            )
        shard_store.set_aside_done()
    if redo:
        store.shard(*MERGE_KEY).set_aside_done()
    return messages


def check_run_files(ctx) -> None:
    """Read every small file of the run a command relies on (jobs.jsonl, each shard's DONE.json and
    attempts.jsonl, select's near_duplicates.json) before it changes anything: a damaged one is a
    CorruptFileError naming it (exit 2), and nothing has been rewritten."""
    ctx.store.read_jobs()
    for stage in STAGE_NAMES:
        for domain in ctx.cfg.domains:
            for rng in stage_shards(ctx.cfg, stage, domain):
                shard = ctx.store.shard(stage, domain, rng.shard)
                shard.done()
                shard.attempts()
    ctx.store.shard(*MERGE_KEY).done()
    for domain in ctx.cfg.domains:
        ctx.view.duplicates(domain)
