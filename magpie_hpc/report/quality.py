"""`python -m magpie_hpc report RUN_DIR`: the quality figures of a merged run, per domain, and a
FLAG line for each figure past its threshold in `[quality]` (exit 1 when any, so scripts can alert).

The figures are the `quality` section the merge writes into each domain's dataset_info.json
(see `quality_figures`), so the report reads a few small files, never the records.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ..quality.settings import AGREEMENT_LEVEL, QualityConfig

__all__ = ["domain_flags", "duplicate_rate", "quality_figures", "report", "run_report"]


def duplicate_rate(instruction_stage_duplicates: int, candidates: int, exact: int, near: int) -> float:
    """Share of clean instructions that were duplicates: those dropped as exact duplicates inside an
    instruction shard, plus exact and near duplicates dropped across shards at select, over all
    clean instructions (select's candidates and the in-shard duplicates)."""
    total = instruction_stage_duplicates + candidates
    return round((instruction_stage_duplicates + exact + near) / total, 4) if total else 0.0


def quality_figures(
    *,
    problems: int,
    duplicates: Mapping | None,
    drop_reasons: Mapping[str, int],
    truncated: int,
    responses: int,
    sft_excluded: int,
    agreements: list[float],
    disagreeing: int,
    dropped_disagreeing: int,
    dpo_pairs: int,
    dpo_skipped: Mapping[str, int],
    equivalence: Mapping | None = None,
    decontamination: Mapping | None = None,
) -> dict:
    """The `quality` section of dataset_info.json (flags are added by the caller)."""
    duplicates = duplicates or {}
    candidates = int(duplicates.get("candidates", 0))
    exact = int(duplicates.get("exact_duplicates", 0))
    near = int(duplicates.get("near_duplicates_dropped", 0))
    in_shard = int(drop_reasons.get("duplicate", 0))
    return {
        "problems": problems,
        "select_candidates": candidates,
        "exact_duplicates_dropped": exact,
        "near_duplicates_dropped": near,
        "instruction_stage_duplicates": in_shard,
        "duplicate_rate": duplicate_rate(in_shard, candidates, exact, near),
        "instruction_drop_reasons": dict(sorted(drop_reasons.items())),
        "truncation_rate": round(truncated / responses, 4) if responses else 0.0,
        "sft_excluded": sft_excluded,
        "sft_excluded_rate": round(sft_excluded / problems, 4) if problems else 0.0,
        "agreement_level": AGREEMENT_LEVEL,
        "agreement_rate": round(sum(a >= AGREEMENT_LEVEL for a in agreements) / len(agreements), 4)
        if agreements
        else 0.0,
        "mean_agreement": round(sum(agreements) / len(agreements), 4) if agreements else 0.0,
        "answers_disagreeing": disagreeing,
        "dropped_disagreeing": dropped_disagreeing,
        "dpo_pairs": dpo_pairs,
        "dpo_skipped": dict(dpo_skipped),
        # how each problem's answers were compared (quality/equivalence.py: EquivalenceStats)
        "answer_equivalence": dict(equivalence or {}),
        # instructions dropped at select as benchmark problems, per file (stages/select.py)
        "decontamination": {
            "dropped": int((decontamination or {}).get("dropped", 0)),
            "files": {f: dict(v) for f, v in (decontamination or {}).get("files", {}).items()},
            "ngram": (decontamination or {}).get("ngram"),
            "threshold": (decontamination or {}).get("threshold"),
        },
    }


def domain_flags(domain: str, figures: Mapping, q: QualityConfig) -> list[str]:
    """One line per threshold the domain crosses (strictly past it)."""
    flags = []
    if figures["truncation_rate"] > q.max_truncation_rate:
        flags.append(
            f"{domain}: truncation rate {figures['truncation_rate']:.1%} > "
            f"quality.max_truncation_rate {q.max_truncation_rate:.1%}"
        )
    if figures["duplicate_rate"] > q.max_duplicate_rate:
        flags.append(
            f"{domain}: duplicate rate {figures['duplicate_rate']:.1%} > "
            f"quality.max_duplicate_rate {q.max_duplicate_rate:.1%}"
        )
    if figures["agreement_rate"] < q.min_agreement_rate:
        flags.append(
            f"{domain}: agreement rate {figures['agreement_rate']:.1%} < "
            f"quality.min_agreement_rate {q.min_agreement_rate:.1%}"
        )
    return flags


def run_report(run_dir: Path | str) -> dict:
    """{"run_dir", "dataset_name", "thresholds", "domains": {domain: figures}, "flags": [...]}."""
    from ..errors import ConfigError, IncompleteRunError
    from ..store import RunStore

    store = RunStore(Path(run_dir))
    if not store.is_run_dir():
        raise ConfigError(
            f"report: {run_dir} is not a magpie-hpc run directory (no run.json); pass the folder launch created"
        )
    from ..context import RunContext
    from ..store import read_json_file

    from ..damage import check_run_files

    ctx = RunContext(Path(run_dir))  # a damaged run.json: one line naming it, exit 2
    check_run_files(ctx)
    cfg = ctx.cfg
    combined_path = store.run_dir / "combined_dataset_info.json"
    if not combined_path.is_file():
        raise IncompleteRunError(f"report: {run_dir} is not merged yet; run `python -m magpie_hpc merge {run_dir}`")
    combined = read_json_file(combined_path, "the merged dataset's summary")
    domains, flags = {}, []
    if not isinstance(combined.get("domains"), dict):
        raise ConfigError(f"{combined_path}: the merged dataset's summary is damaged (no domains); rerun the merge")
    for domain, entry in combined["domains"].items():
        info_path = store.run_dir / str(domain) / "dataset_info.json"
        try:
            info = read_json_file(info_path, f"the dataset info of {domain}")
        except FileNotFoundError:
            raise ConfigError(f"{info_path}: missing; rerun `python -m magpie_hpc merge {run_dir}`") from None
        if "quality" not in info:
            raise IncompleteRunError(
                f"report: {domain}/dataset_info.json has no quality section (merged by an "
                f"older version); run `python -m magpie_hpc merge {run_dir}` again"
            )
        figures = {k: v for k, v in info["quality"].items() if k != "flags"}
        figures["flags"] = domain_flags(domain, figures, cfg.quality)
        domains[domain] = figures
        flags += figures["flags"]
    from ..run_summary import cost_lines, loop_savings_lines

    summary = combined.get("run_summary")
    return {
        "run_dir": str(store.run_dir),
        "dataset_name": combined.get("dataset_name"),
        "loop_savings": loop_savings_lines(summary) if summary else [],
        "gpu_hours": cost_lines(summary) if summary else [],
        "thresholds": {
            k: getattr(cfg.quality, k) for k in ("max_truncation_rate", "max_duplicate_rate", "min_agreement_rate")
        },
        "domains": domains,
        "flags": flags,
    }


_COLUMNS = (  # header, width, formatter
    ("domain", 14, lambda d, f: d),
    ("problems", 8, lambda d, f: str(f["problems"])),
    ("dup_exact", 9, lambda d, f: str(f["exact_duplicates_dropped"] + f["instruction_stage_duplicates"])),
    ("dup_near", 8, lambda d, f: str(f["near_duplicates_dropped"])),
    ("dup_rate", 8, lambda d, f: f"{f['duplicate_rate']:.1%}"),
    ("truncated", 9, lambda d, f: f"{f['truncation_rate']:.1%}"),
    ("loops", 9, lambda d, f: _loops(f, "stopped_as_loops")),
    ("sft_excl", 8, lambda d, f: str(f["sft_excluded"])),
    ("agree", 7, lambda d, f: f"{f['agreement_rate']:.1%}"),
    ("mean_agr", 8, lambda d, f: f"{f['mean_agreement']:.2f}"),
    ("dpo_pairs", 9, lambda d, f: str(f["dpo_pairs"])),
    ("dpo_skip", 8, lambda d, f: str(sum(f["dpo_skipped"].values()))),
)


def _loops(figures: Mapping, key: str) -> str:
    """`sft/preference` counts of a `quality.loops` figure; "-" for a run merged before loops were counted."""
    loops = figures.get("loops")
    if not loops:
        return "-"
    return "/".join(str(loops.get(k, {}).get(key, 0)) for k in ("sft", "preference"))


def format_report(data: dict) -> str:
    lines = [f"quality report: {data['run_dir']} ({data['dataset_name']})", ""]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w, _) in enumerate(_COLUMNS)))
    for domain, figures in data["domains"].items():
        lines.append(
            "  ".join(
                fmt(domain, figures).ljust(w) if i == 0 else fmt(domain, figures).rjust(w)
                for i, (_, w, fmt) in enumerate(_COLUMNS)
            )
        )
    lines += [
        "",
        "dup_exact: exact duplicates dropped (in-shard + across shards at select); dup_near: near "
        "duplicates dropped at select; truncated: share of preference responses cut off; loops: responses "
        "vLLM stopped as loops (finish reason repetition), SFT/preference; agree: share of "
        f"problems whose majority final answer has agreement >= {AGREEMENT_LEVEL:g}.",
        "",
    ]
    for domain, figures in data["domains"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in figures["instruction_drop_reasons"].items()) or "none"
        skipped = ", ".join(f"{k} {v}" for k, v in figures["dpo_skipped"].items() if v) or "none"
        lines.append(
            f"{domain}: instruction drops: {reasons}; DPO skipped: {skipped}"
            + (
                f"; left out (answers disagree): {figures['dropped_disagreeing']}"
                if figures["dropped_disagreeing"]
                else ""
            )
        )
        if figures.get("loops"):
            detection = figures["loops"].get("detection", {})
            lines.append(
                f"{domain}: cut off (SFT/preference): {_loops(figures, 'cut_off_looping')} ending in a "
                f"repeated block, {_loops(figures, 'cut_off_long')} merely long; loop stop "
                + "/".join("on" if detection.get(k) else "off" for k in ("sft", "preference"))
            )
    for domain, figures in data["domains"].items():
        decon = figures.get("decontamination") or {}
        if decon.get("files"):
            per_file = ", ".join(f"{Path(f).name} {v['dropped']} of {v['problems']}" for f, v in decon["files"].items())
            lines.append(f"{domain}: benchmark problems dropped: {decon['dropped']} ({per_file})")
    equivalence = [f.get("answer_equivalence") or {} for f in data["domains"].values()]
    if any(e.get("enabled") for e in equivalence):
        lines.append(
            f"answers compared by value (math-verify) {sum(e.get('answers_by_value', 0) for e in equivalence)}, "
            f"as strings {sum(e.get('answers_by_string', 0) for e in equivalence)}"
        )
    lines.append("")
    if data.get("gpu_hours"):
        lines += ["GPU time per stage:", *[f"  {line}" for line in data["gpu_hours"]], ""]
    if data.get("loop_savings"):
        lines += [
            "loops stopped by vLLM (tokens not generated, at each stage's own tokens/s):",
            *[f"  {line}" for line in data["loop_savings"]],
            "",
        ]
    t = data["thresholds"]
    lines.append(
        f"thresholds: max_truncation_rate {t['max_truncation_rate']:g}, max_duplicate_rate "
        f"{t['max_duplicate_rate']:g}, min_agreement_rate {t['min_agreement_rate']:g}"
    )
    lines += [f"FLAG: {flag}" for flag in data["flags"]] or ["no flags"]
    return "\n".join(lines) + "\n"


def report(run_dir: Path | str, as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the report; 1 when any domain is flagged, else 0."""
    data = run_report(run_dir)
    out = out or sys.stdout
    out.write(json.dumps(data, indent=2) + "\n" if as_json else format_report(data))
    return 1 if data["flags"] else 0
