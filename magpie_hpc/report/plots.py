"""The dataset card's pictures: PNGs drawn with matplotlib's Agg canvas (no display, no pyplot
global state) from the small per-record numbers the merge collects while it streams.

`write_plots(out_dir, samples, rates)` -> the file names written, in card order.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uuid

import numpy as np

__all__ = ["DomainSamples", "PLOTS", "write_plots"]

# File name -> caption, in the order the card shows them.
PLOTS = {
    "instruction_lengths.png": "Instruction length (tokens) per domain",
    "response_lengths.png": "Response length (output tokens) per domain: SFT responses and preference responses",
    "reward_scores.png": "Reward-model scores of the preference responses, and DPO chosen - rejected margins",
    "rates.png": "Truncation and answer-agreement rates per domain",
}


@dataclass
class DomainSamples:
    """Numbers only, one per record or response, in typed arrays (4-8 bytes each, not a Python
    object): about 70 MB for a 1,000,000-problem run with 7 responses per problem."""

    instruction_tokens: array = field(default_factory=lambda: array("i"))
    sft_response_tokens: array = field(default_factory=lambda: array("i"))
    preference_response_tokens: array = field(default_factory=lambda: array("i"))
    scores: array = field(default_factory=lambda: array("f"))
    margins: array = field(default_factory=lambda: array("f"))


def _figure(ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * ncols, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _histograms(ax, series: Mapping[str, Sequence[float]], xlabel: str, title: str, integer: bool = False) -> None:
    """One step histogram per domain on shared bins; an empty series is listed as such."""
    values = [np.asarray(v, dtype=float) for v in series.values() if len(v)]
    if not values:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        joined = np.concatenate(values)
        joined = joined[np.isfinite(joined)]
        lo, hi = (float(joined.min()), float(joined.max())) if len(joined) else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.histogram_bin_edges(
            joined if len(joined) else [lo, hi], bins=min(40, max(5, len(joined) // 5)), range=(lo, hi)
        )
        if integer and hi - lo < 40:
            bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
        for name, data in series.items():
            data = np.asarray(data, dtype=float)
            data = data[np.isfinite(data)]
            if len(data):
                ax.hist(data, bins=bins, histtype="step", linewidth=1.5, label=f"{name} (n={len(data)})")
            else:
                ax.plot([], [], label=f"{name} (no data)")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)


def _rates(ax, rates: Mapping[str, Mapping[str, float]], thresholds: Mapping[str, float]) -> None:
    domains = list(rates)
    kinds = [
        ("truncation_rate", "truncated (preference responses)"),
        ("sft_excluded_rate", "excluded from SFT"),
        ("agreement_rate", "problems whose answers agree"),
    ]
    x = np.arange(len(domains))
    width = 0.8 / len(kinds)
    for k, (key, label) in enumerate(kinds):
        ax.bar(x + (k - (len(kinds) - 1) / 2) * width, [rates[d].get(key, 0.0) for d in domains], width, label=label)
    for key, style in (("max_truncation_rate", ":"), ("min_agreement_rate", "--")):
        if key in thresholds:
            ax.axhline(
                thresholds[key], color="grey", linestyle=style, linewidth=1, label=f"{key} = {thresholds[key]:g}"
            )
    ax.set_xticks(x, domains, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("Truncation and agreement per domain")
    ax.legend(fontsize=8)


def write_plots(
    out_dir: Path,
    samples: Mapping[str, DomainSamples],
    rates: Mapping[str, Mapping[str, float]],
    thresholds: Mapping[str, float] | None = None,
) -> list[str]:
    """Draw every picture of PLOTS into out_dir; returns their file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        # A unique temp name: two merges (or two runs' plots in one folder) never share one.
        tmp = out_dir / f".{name}.{uuid.uuid4().hex}.tmp.png"
        fig.savefig(tmp, format="png")
        tmp.replace(out_dir / name)
        written.append(name)

    fig, (ax,) = _figure()
    _histograms(ax, {d: s.instruction_tokens for d, s in samples.items()}, "tokens", "Instruction length", integer=True)
    save(fig, "instruction_lengths.png")

    fig, (left, right) = _figure(2)
    _histograms(
        left,
        {d: s.sft_response_tokens for d, s in samples.items()},
        "output tokens",
        "SFT responses (stage 2, all, before exclusion)",
        integer=True,
    )
    _histograms(
        right,
        {d: s.preference_response_tokens for d, s in samples.items()},
        "output tokens",
        "Preference responses (stage 3)",
        integer=True,
    )
    save(fig, "response_lengths.png")

    fig, (left, right) = _figure(2)
    _histograms(left, {d: s.scores for d, s in samples.items()}, "reward score", "Reward scores (all responses)")
    _histograms(right, {d: s.margins for d, s in samples.items()}, "score_chosen - score_rejected", "DPO pair margins")
    save(fig, "reward_scores.png")

    fig, (ax,) = _figure()
    _rates(ax, rates, thresholds or {})
    save(fig, "rates.png")
    return written
