"""The dataset card's sections that describe what a run measured and recorded: loops, answer
equivalence, decontamination, training with TRL, generation configurations and provenance.

Each takes the merge's summaries (dataset_info.json / combined_dataset_info.json content) and
returns the card's lines; card.py puts them in order.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "decontamination_lines",
    "equivalence_lines",
    "generation_config_lines",
    "loops_cell",
    "loops_note",
    "provenance_lines",
    "training_lines",
]


def loops_cell(quality: dict) -> str:
    """The Contents table's loops cell: responses stopped as loops, `SFT / preference`."""
    loops = quality.get("loops") or {}
    return " / ".join(str(loops.get(k, {}).get("stopped_as_loops", 0)) for k in ("sft", "preference"))


def loops_note(infos: dict[str, dict]) -> list[str]:
    """What *stopped as loops* means, which setting turns it off, and the cut-off responses that loop."""
    first = next(iter(infos.values()))["quality"].get("loops") or {}
    detection = first.get("detection", {})
    state = {True: "on", False: "off"}
    looping = {
        d: sum(info["quality"].get("loops", {}).get(k, {}).get("cut_off_looping", 0) for k in ("sft", "preference"))
        for d, info in infos.items()
    }
    long = {
        d: sum(info["quality"].get("loops", {}).get(k, {}).get("cut_off_long", 0) for k in ("sft", "preference"))
        for d, info in infos.items()
    }
    return [
        "*stopped as loops*: responses that vLLM ended itself because their last tokens were one block "
        "repeated (finish reason `repetition`; detection was "
        f"{state.get(detection.get('sft'), '?')} for SFT responses and {state.get(detection.get('preference'), '?')} "
        "for preference responses). They are incomplete like cut-off ones: not in the SFT file, never a DPO side. "
        "`repetition_detection.enabled = false` under `[responses]` and `[multi_responses]` (and `[instructions]`, "
        "where a looping sample is dropped as `repetition`) turns the detection off.",
        "*cut off*, of all responses: "
        + "; ".join(f"{d} {looping[d]} ending in a repeated block, {long[d]} merely long" for d in infos)
        + ".",
        "",
    ]


def provenance_lines(prov: dict) -> list[str]:
    """The card's provenance section: model revisions, package versions, SLURM, GPUs per stage."""
    if not prov:
        return []

    def revision(entry: dict | None) -> str:
        entry = entry or {}
        if entry.get("source") == "hf-cache":
            return f"`{entry['revision']}` (Hugging Face cache snapshot)"
        if entry.get("revision"):
            return f"`{entry['revision']}` (of its config and tokenizer files)"
        return "unknown (not a local folder at launch)"

    packages = prov.get("packages") or {}
    git = prov.get("magpie_hpc_git")
    lines = [
        "",
        "## Provenance",
        "",
        f"- Generator revision: {revision(prov.get('model'))}.",
        f"- Reward model revision: {revision(prov.get('reward_model'))}.",
        "- Packages at launch: "
        + ", ".join(f"{k} {v or 'not installed'}" for k, v in packages.items())
        + (
            f"; magpie-hpc from git commit `{git['commit']}`" + (" (with local changes)" if git.get("dirty") else "")
            if git
            else ""
        )
        + ".",
        f"- SLURM: {prov.get('slurm') or 'not installed where the run was launched'}.",
    ]
    gpus = prov.get("stage_gpus") or {}
    if gpus:
        lines += ["", "| stage | GPU types |", "| --- | --- |"]
        lines += [f"| {stage} | {', '.join(types)} |" for stage, types in gpus.items()]
    return lines


def decontamination_lines(infos: dict[str, dict]) -> list[str]:
    """The card's decontamination table: instructions dropped at select per benchmark file."""
    sections = {d: info["quality"].get("decontamination") or {} for d, info in infos.items()}
    files = sorted({f for s in sections.values() for f in s.get("files", {})})
    if not files:
        return [
            "**Decontamination**: none (no `quality.decontamination_files` were given), so nothing checks "
            "these problems against evaluation benchmarks.",
            "",
        ]
    first = next(s for s in sections.values() if s.get("files"))
    lines = [
        f"**Decontamination** against evaluation benchmarks, at selection (before any response was "
        f"generated): instructions sharing a {first['ngram']}-word n-gram with a benchmark problem, or with "
        f"an estimated Jaccard similarity >= {first['threshold']:g} (character 5-grams, MinHash), were dropped "
        "and replaced.",
        "",
        "| benchmark file | problems | " + " | ".join(infos) + " |",
        "| --- | --- | " + " | ".join("---" for _ in infos) + " |",
    ]
    for f in files:
        size = next(s["files"][f]["problems"] for s in sections.values() if f in s.get("files", {}))
        counts = [str(sections[d].get("files", {}).get(f, {}).get("dropped", "-")) for d in infos]
        lines.append(f"| `{Path(f).name}` | {size} | " + " | ".join(counts) + " |")
    return lines + [""]


def equivalence_lines(infos: dict[str, dict]) -> list[str]:
    """The card's paragraph on how answers were compared (dataset_info.json `answer_equivalence`)."""
    stats = {d: info["quality"].get("answer_equivalence") or {} for d, info in infos.items()}
    if not any(s.get("enabled") for s in stats.values()):
        return ["Final answers were compared as normalised LaTeX strings (`quality.answer_equivalence` off).", ""]
    total = lambda key: sum(s.get(key, 0) for s in stats.values())  # noqa: E731
    return [
        "Final answers are grouped by mathematical equivalence with `math-verify` before the vote "
        f"(`0.5` = `\\frac{{1}}{{2}}`): of the distinct answers that had to be compared, "
        f"{total('answers_by_value')} were compared by value ({total('answers_by_exact_rational')} of them exactly "
        f"as integers or fractions) and {total('answers_by_string')} as normalised strings (unparsable, or past "
        f"the time limit: {total('parse_timeouts')} parse and {total('comparison_timeouts')} comparison "
        f"timeouts); equivalence joined differently written answers in {total('problems_merged')} problems.",
        "",
    ]


def generation_config_lines(configs: dict[str, dict[str, list[dict]]]) -> list[str]:
    """The card's list of every configuration the run's chunks were generated under (recorded per
    chunk at commit); more than one where the run was resumed with --force after a change."""
    if not configs:
        return []
    lines = [
        "",
        "## Generation configurations",
        "",
        "The settings recorded with every committed chunk, per stage and domain; each record states "
        "its own in `gen_input_configs` / `gen_response_configs`.",
        "",
    ]
    for stage, domains in configs.items():
        for d, settings in domains.items():
            if not settings:
                lines.append(f"- {stage} / {d}: not recorded (chunks written before settings were recorded)")
                continue
            label = f"{len(settings)} configurations" if len(settings) > 1 else "1 configuration"
            lines.append(
                f"- {stage} / {d} ({label}): " + "; ".join(f"`{json.dumps(c, sort_keys=True)}`" for c in settings)
            )
    return lines


def training_lines(
    files: dict[str, str],
    scored_part: str,
    first: str,
    model: str,
    default_config: str | None,
    empty: dict[str, list[str]],
) -> list[str]:
    """The card's section on which file to train on with which TRL trainer and chat template."""

    def name(key: str) -> str:
        return files[key].replace("<domain>", first)

    scored = (
        "the reasoning and the answer (the whole response)"
        if scored_part == "full"
        else "the answer part only: the text after `</think>`, without the reasoning (the default, "
        "`[rewards] score_reasoning = false`)"
    )
    lines = [
        "## Training with TRL",
        "",
        f"- **SFT** (`SFTTrainer`, `trl sft`): `{files['sft_text']}` (config `<domain>_sft_text`), TRL's standard "
        "prompt-completion format. `prompt` is the exact text the generator was given: its chat template around "
        "the instruction, up to and including what follows the assistant header (`<think>\\n` for DeepSeek-R1), "
        "without the BOS, which the tokenizer adds; `completion` is the full generated text, reasoning, "
        "`</think>` and answer, ended by the EOS token. Train with the generator's own tokenizer and no chat "
        "template applied by TRL (the text already holds it); the loss covers the completion, so the model "
        "learns its reasoning. The seed's `" + files["sft_data"] + "` keeps the original Magpie keys for the "
        "seed's own scripts: `SFTTrainer` cannot read it (no `text` or `prompt`/`completion`), and a "
        "conversational mapping of it trains a DeepSeek-R1 model on the final answer only.",
        f"- **DPO** (`DPOTrainer`): `{files['dpo_text']}` (config `<domain>_dpo_text`), TRL's standard format "
        "with an explicit prompt: `prompt` is the generation prompt text as above, `chosen` and `rejected` the "
        "full generated texts with the EOS token; right for any generator, and the one to use for a reasoning "
        "model (the DeepSeek-R1 template). "
        f"`{files['dpo_data']}` (config `<domain>_dpo`) holds the same pairs in TRL's conversational format; "
        "TRL applies the tokenizer's chat template to it, and the DeepSeek-R1 template removes everything up "
        "to `</think>` from assistant turns and ends the prompt before `<think>\\n`: it trains on the final "
        "answers only. Use it for a model whose chat template keeps assistant turns as they are, or to train "
        "on answers alone.",
        "- **Reward models** (`RewardTrainer`): either DPO file. Both carry `margin` = `score_chosen - "
        "score_rejected` (reward-model score difference, never below `[quality] dpo_min_margin`), and "
        "`RewardTrainer` uses a `margin` column in its loss by itself: `-logsigmoid(r_chosen - r_rejected - "
        'margin)`; drop the column (`dataset.remove_columns("margin")`) for the plain Bradley-Terry loss.',
        f"- **What the reward model scored**: {scored}. The DPO texts hold the reasoning too, so a pair's "
        "order reflects the answers' scores, not the reasoning's.",
        "- Extra columns (`id`, scores, indices) are left alone by the trainers.",
    ]
    if default_config:
        lines.append(f'- `load_dataset("path/to/this/folder")` loads the default config `{default_config}`.')
    if empty:
        shown = "; ".join(f"{d}: {', '.join(f'`{n}`' for n in names)}" for d, names in empty.items())
        lines.append(f"- Empty tables (no records; the JSON file is `[]`, no Parquet file, no config): {shown}.")
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        "from trl import SFTConfig, SFTTrainer",
        "",
        f'train = load_dataset("parquet", data_files="{first}/{name("sft_text").replace(".json", ".parquet")}")'
        '["train"]',
        f'trainer = SFTTrainer(model={model!r}, args=SFTConfig(output_dir="out"), train_dataset=train)',
        "```",
        "",
    ]
    return lines
