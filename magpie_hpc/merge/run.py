"""The whole run's merge: prove every shard done, merge each domain into a staging folder, draw
the plots and write the combined summary and the dataset card, publish them together under the
run's lock (publish.py), and write the merge's done marker last.

Nothing is written before the run is proven complete, and a merge that fails partway leaves the
previous outputs as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..context import RunContext
from ..errors import IncompleteRunError
from ..generation_settings import shard_settings
from ..models import model_label
from ..pipeline import INSTRUCTIONS, MERGE, MERGE_KEY, PIPELINE, STAGE_NAMES
from ..plan import stage_shards
from ..provenance import stage_gpus
from ..quality.equivalence import EquivalenceChecker
from ..report.card import render_readme
from ..report.plots import write_plots
from ..run_summary import build_run_summary, render_run_summary
from ..store import RunStore, inside, write_atomic, write_json_atomic
from ..trl_files import model_revision
from .domain import DomainMerger
from .publish import Staging, merge_lock
from .records import count_label, file_names

__all__ = ["PLOTS_DIR", "generation_configs", "merge_run", "missing_shards"]

PLOTS_DIR = "plots"


def missing_shards(ctx: RunContext) -> list[str]:
    """Every shard of every stage that has no done marker, as `stage domain shard` strings."""
    missing = []
    for domain in ctx.cfg.domains:
        for stage in STAGE_NAMES:
            for shard in stage_shards(ctx.cfg, stage, domain):
                store = ctx.store.shard(stage, domain, shard.shard)
                if store.done() is None:
                    missing.append(f"{stage} {domain} shard {shard.shard}")
                # Sizes here for what stage_rows streams (it checks each chunk's sha256 as it reads it);
                # instruction chunks are not streamed, so their hashes are checked here.
                elif damage := store.damage(full=stage == INSTRUCTIONS):
                    missing.append(f"{damage[0]} (damaged)")
    return missing


def merge_run(ctx: RunContext, accounting: Callable[[RunStore], dict | None] | None = None) -> dict:
    """Write the dataset; raises IncompleteRunError listing what is missing, before writing anything.
    `accounting` (the SLURM merge task passes `slurm.accounting.run_accounting`) gives the run
    summary its GPU-hours; without it they are wall-clock seconds from the done markers."""
    with merge_lock(ctx.run_dir):  # one merge at a time per run (publish.py)
        return _merge_locked(ctx, accounting)


def generation_configs(ctx: RunContext) -> dict[str, dict[str, list[dict]]]:
    """stage -> domain -> every distinct settings its chunks were generated (or scored) with."""
    out: dict[str, dict[str, list[dict]]] = {}
    for stage in (s.name for s in PIPELINE if s.gpu):  # select generates nothing
        for d in ctx.cfg.domains:
            seen: list[dict] = []
            for shard in stage_shards(ctx.cfg, stage, d):
                for settings in shard_settings(ctx.store.shard(stage, d, shard.shard)):
                    if settings not in seen:
                        seen.append(settings)
            out.setdefault(stage, {})[d] = seen
    return out


def _merge_locked(ctx: RunContext, accounting) -> dict:
    from ..damage import check_run_files

    check_run_files(ctx)  # a damaged run file: one line naming it, before anything is written
    missing = missing_shards(ctx)
    if missing:
        shown = "; ".join(missing[:10]) + (f"; and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise IncompleteRunError(
            f"merge: {len(missing)} shard(s) not done: {shown}; run `python -m magpie_hpc resubmit {ctx.run_dir}`"
        )
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Everything is written into a staging folder and published together once complete.
    staging = Staging(ctx.run_dir)
    try:
        combined = _write_outputs(ctx, accounting, date, staging.dir)
    except BaseException:
        staging.discard()
        raise
    marker = ctx.store.shard(*MERGE_KEY)
    marker.done_path.unlink(missing_ok=True)  # old outputs are about to be replaced: not merged meanwhile
    staging.publish([*ctx.cfg.domains, PLOTS_DIR, "combined_dataset_info.json", "README.md"])
    # A table that had rows in an earlier merge and has none now: its old Parquet file would load as
    # current data (publish replaces files by name and leaves the rest).
    for domain, names in (combined.get("empty_tables") or {}).items():
        for name in names:
            inside(ctx.run_dir, ctx.run_dir / domain / name).with_suffix(".parquet").unlink(missing_ok=True)
    marker.mark_done({"stage": MERGE, "finished": date, "total_problems": ctx.cfg.total_problems})  # last
    return combined


def _write_outputs(ctx: RunContext, accounting, date: str, out: Path) -> dict:
    infos, samples = {}, {}
    q = ctx.cfg.quality
    with (
        EquivalenceChecker(q.equivalence_timeout_s, q.equivalence_workers)
        if q.answer_equivalence
        else contextlib.nullcontext()
    ) as checker:
        for d in ctx.cfg.domains:
            merger = DomainMerger(ctx, d, date, out_root=out, checker=checker)
            infos[d], samples[d] = merger.run(), merger.samples
    rates = {
        d: {k: info["quality"][k] for k in ("truncation_rate", "sft_excluded_rate", "agreement_rate")}
        for d, info in infos.items()
    }
    plots = write_plots(out / PLOTS_DIR, samples, rates, ctx.cfg.quality.model_dump())
    del samples
    cfg = ctx.cfg
    total = cfg.total_problems
    all_six = len(cfg.domains) == len(cfg.domain_settings)
    combined = {
        "dataset_name": f"Magpie-Math-{'Complete' if all_six else 'Subset'}-HLE-{count_label(total)}",
        "model": model_label(ctx.model.name),
        "model_revision": model_revision(ctx.manifest, "model"),
        "total_problems": total,
        "generation_date": date,
        "domains": {
            d: {"problems": cfg.domain(d).count, "description": cfg.domain(d).description, "directory": d}
            for d in cfg.domains
        },
        "files_per_domain": {
            k: v.replace(cfg.domains[0], "<domain>", 1)
            for k, v in file_names(cfg.domains[0], cfg.multi_responses.num_responses).items()
        },
        "reward_model": model_label(ctx.reward_path),
        "reward_model_revision": model_revision(ctx.manifest, "reward_model"),
        "magpie_hpc_version": __version__,
        "run": ctx.manifest.get("run_name"),
        "summary": {d: info["counts"] for d, info in infos.items()},
        "empty_tables": {d: info["empty_tables"] for d, info in infos.items() if info["empty_tables"]},
        "quality_settings": cfg.quality.model_dump(),
        "quality_flags": [f for info in infos.values() for f in info["quality"]["flags"]],
        "plots": [f"{PLOTS_DIR}/{name}" for name in plots],
        "generation_configs": generation_configs(ctx),
    }
    # launch's record (run.json) plus the GPU types each stage ran on (DONE.json)
    combined["provenance"] = {
        **(ctx.manifest.get("provenance") or {}),
        "stage_gpus": stage_gpus(ctx),
        "merged_by_magpie_hpc": __version__,
    }
    combined["run_summary"] = build_run_summary(ctx, accounting)
    write_json_atomic(out / "combined_dataset_info.json", combined)
    readme = render_readme(combined, infos) + render_run_summary(combined["run_summary"])
    write_atomic(out / "README.md", readme.encode())
    return combined
