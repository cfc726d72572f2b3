"""The run's README.md: a Hugging Face dataset card written from the merge's summaries.

YAML front matter with one config per domain and file kind (and one per file kind over every
domain), then counts, pictures, the settings used and the known limits; the sections that depend
on what the run recorded are in sections.py. Nothing here reads the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from .plots import PLOTS
from .sections import (
    decontamination_lines,
    equivalence_lines,
    generation_config_lines,
    loops_cell,
    loops_note,
    provenance_lines,
    training_lines,
)

__all__ = ["CARD_CONFIGS", "card_configs", "render_readme"]

# The card's configs: one per domain and file kind, named `<domain>_<suffix>`, and the count that
# says whether the file holds records (`datasets` cannot load an empty file).
CARD_CONFIGS = (
    ("instructions", "instructions", "instructions"),
    ("sft", "sft_data", "sft_records"),
    ("preference", "preference_data", "preference_records"),
    ("dpo", "dpo_data", "dpo_pairs"),
    ("sft_text", "sft_text", "sft_records"),
    ("dpo_text", "dpo_text", "dpo_pairs"),
)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def card_configs(combined: dict, infos: dict[str, dict]) -> list[dict]:
    """[{"config_name", "data_files"}] for every non-empty Parquet table, paths relative to the run dir;
    then one config per file kind over every domain's non-empty table (`sft_text`, ...), the first
    of them with rows marked `default` (so `load_dataset(RUN_DIR)` needs no config name)."""
    configs, by_kind = [], {}
    for d, info in infos.items():
        directory = combined["domains"][d]["directory"]
        for suffix, key, count in CARD_CONFIGS:
            if info["counts"].get(count, 0) > 0:
                parquet = Path(info["files"][key]).with_suffix(".parquet").name
                configs.append({"config_name": f"{d}_{suffix}", "data_files": f"{directory}/{parquet}"})
                by_kind.setdefault(suffix, []).append(f"{directory}/{parquet}")
    # The TRL standard-format SFT table is what most readers train on first.
    order = ("sft_text", "dpo_text", "sft", "preference", "dpo", "instructions")
    kinds = [{"config_name": kind, "data_files": by_kind[kind]} for kind in order if kind in by_kind]
    if kinds:
        kinds[0]["default"] = True
    return configs + kinds


def _revision(revision: str | None) -> str:
    return f" (revision `{revision}`)" if revision else ""


def render_readme(combined: dict, infos: dict[str, dict]) -> str:
    """The run's README.md: a Hugging Face dataset card (YAML front matter with one config per domain
    and file kind), then counts, pictures, the settings used and the known limits."""
    files = combined["files_per_domain"]
    q = combined.get("quality_settings", {})
    first = next(iter(infos))
    params = infos[first]["parameters"]
    configs = card_configs(combined, infos)
    yaml = [
        "---",
        "license: other",
        "task_categories:",
        "- text-generation",
        "language:",
        "- en",
        "tags:",
        "- math",
        "- synthetic",
        "- magpie",
        f"pretty_name: {json.dumps(combined['dataset_name'])}",
        "size_categories:",
        f"- {_size_category(combined['total_problems'])}",
        "configs:",
    ]
    for c in configs:
        yaml += [f"- config_name: {json.dumps(c['config_name'])}", f"  data_files: {json.dumps(c['data_files'])}"]
        if c.get("default"):
            yaml.append("  default: true")
    yaml.append("---")

    lines = [
        *yaml,
        "",
        f"# {combined['dataset_name']}",
        "",
        f"Research-level math problems synthesised with the Magpie method by `{combined['model']}` (the model "
        "writes the question from its pre-query template alone), answered by the same model and scored by "
        f"`{combined['reward_model']}`. Generated {combined['generation_date']} by magpie-hpc "
        f"{combined['magpie_hpc_version']} (run `{combined.get('run')}`).",
        "",
        "## Contents",
        "",
        "| domain | problems | SFT records | preference records | DPO pairs | duplicates removed (exact / near) "
        "| truncated (preference) | stopped as loops (SFT / preference) | answers agree |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d, info in infos.items():
        c, qual = info["counts"], info["quality"]
        lines.append(
            f"| {d} | {info['problem_count']} | {c['sft_records']} | {c['preference_records']} | {c['dpo_pairs']} | "
            f"{qual['exact_duplicates_dropped'] + qual['instruction_stage_duplicates']} / "
            f"{qual['near_duplicates_dropped']} | {qual['truncation_rate']:.1%} | {loops_cell(qual)} | "
            f"{qual['agreement_rate']:.1%} |"
        )
    lines += [
        "",
        f"*answers agree*: share of problems whose most common final answer is given by at least "
        f"{infos[first]['quality']['agreement_level']:.0%} of the {params['num_preference_responses']} responses. "
        "Every figure, with the DPO problems skipped by reason, is in each domain's `dataset_info.json` "
        "(`counts`, `quality`); `python -m magpie_hpc report RUN_DIR` prints them and flags thresholds.",
        "",
    ]
    lines += loops_note(infos)
    lines += equivalence_lines(infos)
    lines += decontamination_lines(infos)
    flags = combined.get("quality_flags", [])
    if flags:
        lines += ["**Quality flags** (thresholds of `[quality]`):", "", *[f"- {f}" for f in flags], ""]

    lines += [
        "## Configs and files",
        "",
        "Each domain folder holds these files, each JSON file with a Parquet twin beside it (but for a table "
        "without records: its JSON file is `[]` and it has no Parquet file, as `datasets` cannot load one); "
        "the card's configs (`<domain>_instructions`, `<domain>_sft`, `<domain>_preference`, `<domain>_dpo`, "
        "`<domain>_sft_text`, `<domain>_dpo_text`) point at the Parquet files, and one config per file kind "
        "(`sft_text`, `dpo_text`, `sft`, `preference`, `dpo`, `instructions`) holds that table of every domain"
        + (
            f"; `{next(c['config_name'] for c in configs if c.get('default'))}` is the default."
            if any(c.get("default") for c in configs)
            else "."
        ),
        "",
        f"- `{files['instructions']}` (`_instructions`): instructions only (`id`, `instruction`, "
        "`pre_query_template`, `gen_input_configs` with the seed, `instruction_tokens`).",
        f"- `{files['sft_data']}` (`_sft`): `instruction` + `response`, with `reasoning` and `answer` split at "
        "`</think>`; responses that were cut off (finish_reason `length`, or a reasoning model that never "
        "closed `</think>`) or stopped as a loop (finish_reason `repetition`) are left out.",
        f"- `{files['preference_data']}` (`_preference`): `instruction`, `responses`, `scores` (also as "
        "`rewards_armorm`), per response `finish_reasons`, `truncated`, `complete`, `final_answers` (normalised "
        "last `\\boxed{}` of the answer part, null when none or incomplete), and per problem `majority_answer`, "
        "`agreement` (its share of the responses) and `answers_agree` (some answer given twice), answers "
        "counted together when equal in value"
        + ("; problems whose answers never agree are left out." if q.get("drop_disagreeing") else "."),
        f"- `{files['dpo_data']}` (`_dpo`): TRL `DPOTrainer` conversational format: `prompt` "
        "(`[{role: user, content}]`), `chosen` and `rejected` (`[{role: assistant, content}]`), with "
        "`score_chosen`, `score_rejected`, `margin`. Chosen is the highest-scored complete response, rejected "
        "the lowest-scored complete response with a different text; problems with fewer than two distinct "
        "complete responses or equal scores"
        + (f", or a margin below {q['dpo_min_margin']:g}," if q.get("dpo_min_margin") else "")
        + " give no pair.",
        f"- `{files['sft_text']}` (`_sft_text`): the SFT records in TRL's standard prompt-completion format "
        "(`id`, `prompt`, `completion`); see *Training with TRL*.",
        f"- `{files['dpo_text']}` (`_dpo_text`): the DPO pairs in TRL's standard format with an explicit "
        "prompt (`prompt`, `chosen`, `rejected` as plain text, and the same scores, `margin` and indices).",
        f"- `{files['info']}`: per-domain metadata, counts, quality figures and `empty_tables`.",
        "",
        *training_lines(
            files,
            params["reward_scored_part"],
            first,
            combined["model"],
            next((c["config_name"] for c in configs if c.get("default")), None),
            combined.get("empty_tables") or {},
        ),
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        "# one file",
        f'dpo = load_dataset("parquet", data_files="{first}/{first}_dpo_text.parquet")["train"]',
        "# one file kind across every domain (tables without records have no Parquet file)",
        'sft = load_dataset("parquet", data_files="*/*_sft_text.parquet")["train"]',
        "# a config of this card (a local copy of the folder, or its Hub repository)",
        f'sft = load_dataset("path/to/this/folder", "{configs[0]["config_name"] if configs else first + "_sft"}")'
        '["train"]',
        "```",
        "",
    ]
    if combined.get("plots"):
        lines += ["## Pictures", ""]
        for path in combined["plots"]:
            caption = PLOTS.get(Path(path).name, Path(path).stem)
            lines += [f"![{caption}]({path})", "", f"*{caption}.*", ""]

    lines += [
        "## Settings used",
        "",
        f"- Generator: `{combined['model']}`{_revision(combined.get('model_revision'))}; reward model: "
        f"`{combined['reward_model']}`{_revision(combined.get('reward_model_revision'))}, scoring the "
        f"{'reasoning and answer' if params['reward_scored_part'] == 'full' else 'answer part only'}.",
        f"- Preference responses: {params['num_preference_responses']} per problem, temperature "
        f"{params['preference_temperature']:g}, top_p {params['preference_top_p']:g}; run seed {params['seed']}.",
        f"- Instructions: advanced reasoning mode {params['advanced_reasoning_mode']}; cleaned (cut-off "
        "questions, appended answers, typed-out template tokens) and de-duplicated: exact duplicates, then "
        + (
            f"near-duplicates across the whole domain (estimated Jaccard of character 5-grams >= "
            f"{q.get('near_dup_threshold', 0.85):g})."
            if q.get("near_dedup", True)
            else "no near-duplicate removal."
        ),
        # benchmark files by name: their folder says where the run was made, nothing about the data
        f"- Quality settings: `{json.dumps({**q, 'decontamination_files': [Path(f).name for f in q.get('decontamination_files') or []]})}`.",
        "",
        "| domain | instruction temperature | response temperature | max tokens (instruction / response) |",
        "| --- | --- | --- | --- |",
    ]
    for d, info in infos.items():
        p = info["parameters"]
        lines.append(
            f"| {d} | {p['instruction_temperature']:g} | {p['response_temperature']:g} | "
            f"{p['max_tokens_instruction']} / {p['max_tokens_response']} |"
        )
    lines += generation_config_lines(combined.get("generation_configs") or {})
    lines += provenance_lines(combined.get("provenance") or {})
    lines += [
        "",
        "## Known limits",
        "",
        "- No ground truth: `majority_answer` and `agreement` measure self-consistency, not correctness. "
        + (
            "Answers are grouped by mathematical equivalence (math-verify), so `0.5` and `\\frac{1}{2}` agree; "
            "an answer it cannot parse in time is compared as normalised LaTeX, where equal values written "
            "differently count as disagreeing."
            if q.get("answer_equivalence", True)
            else "Answers are compared as normalised LaTeX, never evaluated, so equal values written differently "
            "(`0.5` and `\\frac{1}{2}`) count as disagreeing."
        ),
        "- Reward scores come from one reward model, uncalibrated across domains; a DPO margin is a score "
        "difference, not a probability.",
        "- The questions are written by the model itself: some may be ill-posed, unsolvable or trivially easy; "
        + (
            "they are checked against the benchmark files listed above only (an n-gram and MinHash test, not "
            "paraphrase detection); "
            if q.get("decontamination_files")
            else "nothing checks them against public benchmarks (contamination); "
        )
        + "near-duplicates are removed within each domain only (a MinHash estimate), not across domains.",
        "- The SFT file holds fewer records than problems when responses were cut off; the preference file "
        "keeps cut-off responses, marked by `truncated` and `complete`.",
        "- `datasets` cannot load a file without records: a table without records has its `[]` JSON file "
        "only (no Parquet file, no config), and `dataset_info.json` names it under `empty_tables`.",
        f"- License: the records are output of `{combined['model']}` and `{combined['reward_model']}`; their "
        "licenses and terms of use apply (`license: other`).",
        "",
    ]
    return "\n".join(lines)
