"""Dataset quality end to end on the synthetic engine: near-duplicate removal at select, final
answers and agreement, the DPO file, Hugging Face loading of every output, the pictures and the
dataset card, and `python -m magpie_hpc report`.

One truncating synthetic run (two domains, 6 problems each) is shared by the module; tests that
change settings work on a copy of it (editing its frozen run.json) and rerun only select or merge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.errors import MagpieError
from magpie_hpc.merge import merge_run
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.stages.instructions import INSTRUCTION_SCHEMA
from magpie_hpc.store import RunStore

DOMAINS = ("algebra", "geometry")
COUNT = 6
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    """A limit of 200 words cuts off part of the 7 responses (synthetic ones run 30-375); the
    single responses get 400, so the SFT files never come out empty by the luck of the draw."""
    root = tmp_path_factory.mktemp("quality")
    full = {"max_tokens_instruction": 64, "max_tokens_response": 400}
    cfg = small_config(
        root / "small.toml",
        max_tokens=(64, 200),
        quality={"max_truncation_rate": 0.0},
        **{f"domain_settings.{d}": full for d in DOMAINS},
    )
    assert main(local_launch(tiny_models, root / "data", ",".join(DOMAINS), COUNT, cfg)) == 0
    (run,) = (root / "data").iterdir()
    return run


def _copy(run_dir: Path, tmp_path: Path, **quality) -> Path:
    """A copy of the run whose frozen config has these quality settings."""
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "run.json").read_text())
    manifest["config"]["quality"].update(quality)
    (copy / "run.json").write_text(json.dumps(manifest))
    return copy


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _load(path: Path, cache: Path):
    from datasets import load_dataset

    return load_dataset("json" if path.suffix == ".json" else "parquet", data_files=str(path), cache_dir=str(cache))[
        "train"
    ]


# --- near-duplicates at select -------------------------------------------------------------------

BASE = [
    "Let $G$ be a finite group of order 2024. Prove that $G$ has a normal subgroup of index 2, or give a counterexample.",
    "Compute $\\int_0^\\infty x^3 e^{-x^2}\\,dx$ and express the result in closed form, justifying every change of variables.",
    "Find all primes $p$ such that $p^2 + 2$ is also prime, and prove that no other primes have this property.",
    "A fair die is rolled until a six appears. What are the expected number of rolls and its variance?",
    "Determine the number of spanning trees of the complete bipartite graph $K_{3,4}$ using the matrix-tree theorem.",
    "Show that every bounded monotone sequence of real numbers converges, using only the least upper bound property.",
    "In triangle $ABC$ the bisector of angle $A$ meets $BC$ at $D$. If $AB = 7$, $AC = 5$ and $BC = 9$, find $BD$.",
    "Evaluate $\\sum_{n=1}^{\\infty} \\frac{1}{n(n+1)(n+2)}$ by partial fractions and telescoping.",
]
NEAR_1 = BASE[1].replace("closed form,", "closed-form;")  # punctuation only: not an exact duplicate
NEAR_4 = BASE[4].replace("spanning", "spaning")  # a typo: estimated Jaccard ~0.92
EXACT_2 = "  " + BASE[2].upper() + " "  # the same after case and whitespace folding


def _plant(run: Path, domain: str, shards: list[list[str | None]]) -> None:
    """Replace the domain's instruction shards by these texts (None: a sample cleaning dropped)."""
    store = RunStore(run)
    for index, texts in enumerate(shards):
        shard = store.shard("instructions", domain, index)
        shutil.rmtree(shard.path)
        n = len(texts)
        shard.commit(
            0,
            pa.table(
                {
                    "sample": list(range(n)),
                    "instruction": texts,
                    "raw": [t or "Evaluate:" for t in texts],
                    "drop_reason": [None if t else "dangling" for t in texts],
                    "answer_cut": [False] * n,
                    "finish_reason": ["stop"] * n,
                    "prompt_tokens": [10] * n,
                    "output_tokens": [30 + i for i in range(n)],
                    "seed": [100 + index] * n,
                    "chunk": [0] * n,
                    "created": [0] * n,
                },
                schema=INSTRUCTION_SCHEMA,
            ),
        )
        shard.mark_done({"rows": n, "drop_reasons": {"dangling": texts.count(None)}})
    shutil.rmtree(store.shard("select", domain, 0).path)


def _select(run: Path, domain: str) -> tuple[list[dict], dict]:
    run_shard(RunContext(run), "select", domain, 0)
    store = RunStore(run)
    chosen = store.shard("select", domain, 0).read_all().to_pylist()
    duplicates = json.loads((store.shard("select", domain, 0).path.parent / "near_duplicates.json").read_text())
    return chosen, duplicates


def test_near_duplicates_removed_across_shards(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    _plant(
        run,
        "algebra",
        [[BASE[0], BASE[1], None, BASE[2], BASE[3]], [NEAR_1, BASE[4], EXACT_2, NEAR_4, BASE[5], BASE[6], BASE[7]]],
    )
    chosen, duplicates = _select(run, "algebra")
    # Exactly `count`, in shard then sample order, with both near-duplicates and the exact copy gone.
    assert [r["instruction"] for r in chosen] == BASE[:COUNT]
    assert [r["id"] for r in chosen] == [f"algebra-{i}" for i in range(COUNT)]
    assert [(r["source_shard"], r["source_sample"]) for r in chosen] == [(0, 0), (0, 1), (0, 3), (0, 4), (1, 1), (1, 4)]
    assert (duplicates["candidates"], duplicates["exact_duplicates"], duplicates["near_duplicates_dropped"]) == (
        11,
        1,
        2,
    )
    found = {(d["instruction"], d["duplicate_of_instruction"]) for d in duplicates["near_duplicates"]}
    assert found == {(NEAR_1, BASE[1]), (NEAR_4, BASE[4])}
    for d in duplicates["near_duplicates"]:
        assert d["similarity"] >= 0.85
        assert (d["source_shard"], d["duplicate_of_source_shard"]) in {(1, 0), (1, 1)}
    near_1 = next(d for d in duplicates["near_duplicates"] if d["instruction"] == NEAR_1)
    assert (near_1["source_shard"], near_1["source_sample"], near_1["duplicate_of_source_sample"]) == (1, 0, 1)

    # The merge reports the same counts, and `report` reads them.
    merge_run(RunContext(run))
    quality = json.loads((run / "algebra" / "dataset_info.json").read_text())["quality"]
    assert (quality["exact_duplicates_dropped"], quality["near_duplicates_dropped"]) == (1, 2)
    assert quality["instruction_drop_reasons"] == {"dangling": 1}
    assert quality["duplicate_rate"] == pytest.approx(3 / 11, abs=1e-4)

    # near_dedup off: only the exact copy goes, so the near-duplicate of BASE[1] is chosen.
    manifest = json.loads((run / "run.json").read_text())
    manifest["config"]["quality"]["near_dedup"] = False
    (run / "run.json").write_text(json.dumps(manifest))
    shutil.rmtree(RunStore(run).shard("select", "algebra", 0).path)
    chosen, duplicates = _select(run, "algebra")
    assert [r["instruction"] for r in chosen] == [*BASE[:4], NEAR_1, BASE[4]]
    assert (duplicates["exact_duplicates"], duplicates["near_duplicates_dropped"]) == (1, 0)


def test_too_few_after_near_dedup_is_a_clear_error(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    _plant(run, "geometry", [[BASE[0], BASE[1], BASE[2], BASE[4]], [NEAR_1, NEAR_4, BASE[3], EXACT_2]])
    with pytest.raises(MagpieError, match=r"only 5 distinct clean instructions for 6 problems \(1 exact and 2 near"):
        run_shard(RunContext(run), "select", "geometry", 0)
    assert not (RunStore(run).shard("select", "geometry", 0).done())


# --- answers and DPO -----------------------------------------------------------------------------


def test_preference_records_carry_final_answers(run_dir):
    pref = _records(run_dir / "algebra" / "algebra_ins_7res_armorm.json")
    assert len(pref) == COUNT
    saw_none = saw_answer = False
    for rec in pref:
        assert len(rec["final_answers"]) == 7
        for answer, complete in zip(rec["final_answers"], rec["complete"]):
            if not complete:
                assert answer is None  # a cut-off response has no final answer
            saw_none |= answer is None
            saw_answer |= answer is not None
        given = [a for a in rec["final_answers"] if a is not None]
        if given:
            top = max(given.count(a) for a in given)
            assert rec["majority_answer"] in given and given.count(rec["majority_answer"]) == top
            assert rec["agreement"] == pytest.approx(top / 7)
        else:
            assert rec["majority_answer"] is None and rec["agreement"] == 0.0
        assert rec["answers_agree"] == (bool(given) and top >= 2)
    assert saw_none and saw_answer


def test_dpo_file(run_dir, tmp_path):
    total_pairs = 0
    for domain in DOMAINS:
        folder = run_dir / domain
        info = json.loads((folder / "dataset_info.json").read_text())
        assert info["files"]["dpo_data"] == f"{domain}_dpo.json"
        pref = {r["id"]: r for r in _records(folder / info["files"]["preference_data"])}
        dpo = _records(folder / f"{domain}_dpo.json")
        loaded = _load(folder / f"{domain}_dpo.json", tmp_path / "hf")
        assert loaded.num_rows == len(dpo) and loaded[0]["prompt"][0]["role"] == "user"
        assert _load(folder / f"{domain}_dpo.parquet", tmp_path / "hf")["id"] == [r["id"] for r in dpo]
        for rec in dpo:
            p = pref[rec["id"]]
            assert rec["prompt"] == [{"role": "user", "content": p["instruction"]}]
            chosen, rejected = rec["chosen"][0]["content"], rec["rejected"][0]["content"]
            assert rec["chosen"][0]["role"] == rec["rejected"][0]["role"] == "assistant"
            assert chosen.strip() != rejected.strip()
            i, j = rec["chosen_index"], rec["rejected_index"]
            assert (p["responses"][i], p["responses"][j]) == (chosen, rejected)
            # Never a truncated or incomplete side.
            assert p["complete"][i] and p["complete"][j] and not p["truncated"][i] and not p["truncated"][j]
            assert rec["margin"] == pytest.approx(rec["score_chosen"] - rec["score_rejected"]) and rec["margin"] > 0
            assert rec["score_chosen"] == max(s for s, ok in zip(p["scores"], p["complete"]) if ok)
        c = info["counts"]
        # Every problem has a pair or a counted reason.
        assert c["dpo_pairs"] == len(dpo)
        assert (
            c["dpo_pairs"]
            + c["dpo_skipped_no_pair"]
            + c["dpo_skipped_tie"]
            + c["dpo_skipped_margin"]
            + c["dpo_skipped_disagreeing"]
            == COUNT
        )
        total_pairs += len(dpo)
    assert total_pairs > 0


def test_dpo_min_margin_and_drop_disagreeing(run_dir, tmp_path):
    margins = sorted(r["margin"] for d in DOMAINS for r in _records(run_dir / d / f"{d}_dpo.json"))
    cut = margins[len(margins) // 2]  # keeps the upper half, inclusive
    run = _copy(run_dir, tmp_path, dpo_min_margin=cut, drop_disagreeing=True)
    merge_run(RunContext(run))
    for domain in DOMAINS:
        before = _records(run_dir / domain / f"{domain}_ins_7res_armorm.json")
        after = _records(run / domain / f"{domain}_ins_7res_armorm.json")
        agreeing = [r["id"] for r in before if r["answers_agree"]]
        assert [r["id"] for r in after] == agreeing  # problems whose answers never agree are left out
        counts = json.loads((run / domain / "dataset_info.json").read_text())["counts"]
        assert counts["preference_dropped_disagreeing"] == counts["dpo_skipped_disagreeing"] == COUNT - len(agreeing)
        dpo = _records(run / domain / f"{domain}_dpo.json")
        assert all(r["margin"] >= cut and r["id"] in agreeing for r in dpo)
        old = {r["id"]: r for r in _records(run_dir / domain / f"{domain}_dpo.json")}
        assert [r["id"] for r in dpo] == [i for i in old if i in agreeing and old[i]["margin"] >= cut]
        assert counts["dpo_skipped_margin"] == sum(1 for i in old if i in agreeing and old[i]["margin"] < cut)
    assert (
        sum(
            json.loads((run / d / "dataset_info.json").read_text())["counts"]["preference_dropped_disagreeing"]
            for d in DOMAINS
        )
        > 0
    ), "the truncating run should have problems whose answers never agree"


# --- Hugging Face loading, pictures, card --------------------------------------------------------


def _same(loaded, original) -> bool:
    """A value as `datasets` hands it back equals the JSON one: Arrow gives a struct column the
    union of its rows' keys, so keys a row lacks come back as None."""
    if isinstance(original, dict):
        return (
            isinstance(loaded, dict)
            and set(original) <= set(loaded)
            and all(_same(loaded[k], v) for k, v in original.items())
            and all(loaded[k] is None for k in set(loaded) - set(original))
        )
    if isinstance(original, list):
        return isinstance(loaded, list) and len(loaded) == len(original) and all(map(_same, loaded, original))
    if isinstance(original, float):
        return loaded == pytest.approx(original)
    return loaded == original


def test_every_output_loads_with_datasets(run_dir, tmp_path):
    outputs = sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.suffix in (".json", ".parquet") and "work" not in p.relative_to(run_dir).parts and p.name != "run.json"
    )
    tables = [
        f"{d}/{d}_{kind}.{ext}"
        for d in DOMAINS
        for kind in ("ins", "ins_res", "ins_7res_armorm", "dpo", "sft_text", "dpo_text")
        for ext in ("json", "parquet")
    ]
    assert outputs == sorted(["combined_dataset_info.json", *tables, *(f"{d}/dataset_info.json" for d in DOMAINS)])
    for rel in outputs:
        dataset = _load(run_dir / rel, tmp_path / "hf")
        if rel.endswith(".json") and isinstance(data := json.loads((run_dir / rel).read_text()), list):
            assert dataset.num_rows == len(data) > 0, rel  # `datasets` cannot load an empty file
            assert set(dataset.column_names) == set(data[0])  # every key became a column...
            for i in (0, len(data) - 1):  # ...holding the values the JSON holds
                assert _same(dataset[i], data[i]), (rel, i)
            assert dataset["id"] == [r["id"] for r in data]
        else:
            assert dataset.num_rows == 1 if rel.endswith(".json") else dataset.num_rows > 0, rel


def test_plots_and_card(run_dir, tmp_path):
    combined = json.loads((run_dir / "combined_dataset_info.json").read_text())
    assert combined["files_per_domain"]["dpo_data"] == "<domain>_dpo.json"
    plots = combined["plots"]
    assert {Path(p).name for p in plots} == {
        "instruction_lengths.png",
        "response_lengths.png",
        "reward_scores.png",
        "rates.png",
    }
    card = (run_dir / "README.md").read_text()
    for rel in plots:
        png = (run_dir / rel).read_bytes()
        assert png[:8] == PNG_SIGNATURE and len(png) > 10_000, rel  # a drawn figure, not an empty canvas
        import matplotlib.image

        pixels = matplotlib.image.imread(run_dir / rel)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 600 and pixels.std() > 0.01, rel
        assert f"]({rel})" in card  # embedded with a relative link

    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] and front["task_categories"] == ["text-generation"] and front["language"] == ["en"]
    assert {"math", "synthetic", "magpie"} <= set(front["tags"])
    names = {c["config_name"]: c["data_files"] for c in front["configs"]}
    kinds = ("instructions", "sft", "preference", "dpo", "sft_text", "dpo_text")
    assert set(names) == {f"{d}_{k}" for d in DOMAINS for k in kinds} | set(kinds)
    assert names["algebra_sft"] == "algebra/algebra_ins_res.parquet"
    assert names["sft_text"] == [f"{d}/{d}_sft_text.parquet" for d in DOMAINS]
    assert [c["config_name"] for c in front["configs"] if c.get("default")] == ["sft_text"]
    for data_files in names.values():
        assert all((run_dir / f).is_file() for f in ([data_files] if isinstance(data_files, str) else data_files))
    # `datasets` itself reads the card's configs from the folder.
    from datasets import load_dataset

    dpo = load_dataset(str(run_dir), "geometry_dpo", cache_dir=str(tmp_path / "hf"))["train"]
    assert dpo.num_rows == len(_records(run_dir / "geometry" / "geometry_dpo.json"))
    body = card.split("---\n", 2)[2]
    for words in ("## Known limits", "## Settings used", "near_dup_threshold", "| algebra | 6 |"):
        assert words in body


# --- report --------------------------------------------------------------------------------------


def test_report_flags_and_exit_code(run_dir, tmp_path, capsys):
    # The run's config sets max_truncation_rate = 0 and its responses are cut off: flagged, exit 1.
    assert main(["report", str(run_dir)]) == 1
    out = capsys.readouterr().out
    for domain in DOMAINS:
        assert f"FLAG: {domain}: truncation rate" in out
        row = next(line for line in out.splitlines() if line.startswith(domain + " "))
        assert row.split()[1] == str(COUNT)
    assert "dup_near" in out and "dpo_pairs" in out and "instruction drops" in out

    assert main(["report", str(run_dir), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    for domain in DOMAINS:
        figures = data["domains"][domain]
        info = json.loads((run_dir / domain / "dataset_info.json").read_text())
        assert figures["truncation_rate"] == info["counts"]["preference_truncation_rate"] > 0
        assert figures["dpo_pairs"] == info["counts"]["dpo_pairs"]
        assert figures["sft_excluded"] == info["counts"]["sft_excluded_incomplete"]
    assert data["flags"] and all("truncation" in f or "agreement" in f or "duplicate" in f for f in data["flags"])

    # Thresholds nothing crosses: no flag, exit 0.
    relaxed = _copy(run_dir, tmp_path, max_truncation_rate=1.0, max_duplicate_rate=1.0, min_agreement_rate=0.0)
    assert main(["report", str(relaxed)]) == 0
    out = capsys.readouterr().out
    assert "FLAG" not in out and "no flags" in out

    # Not a run directory: one error line, exit 2 (never 1, which means "flagged").
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: report:")
