"""The run's files as `datasets` and TRL take them, with no mapping written by the user (issue 13
part 4, issue 17 part 1): TRL's standard-format SFT and DPO tables, trained on for two steps with
SFTTrainer and DPOTrainer on the tiny R1 model; every file, config and per-kind glob loaded with
`load_dataset`; an empty table without a Parquet file; models named without machine paths.

One synthetic run (two domains) is shared by the module: geometry's single responses are cut off
after 3 words, so its SFT tables are empty; the 7 responses get room, so both domains have pairs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.context import RunContext
from magpie_hpc.models import PromptBuilder, ResolvedModel, load_tokenizer
from magpie_hpc.registry import TEMPLATE_FAMILIES
from magpie_hpc.models import model_label

DOMAINS = ("algebra", "geometry")
COUNT = 4
BOS = TEMPLATE_FAMILIES["deepseek_r1"]["bos"]
KINDS = {
    "instructions": "ins",
    "sft": "ins_res",
    "preference": "ins_7res_armorm",
    "dpo": "dpo",
    "sft_text": "sft_text",
    "dpo_text": "dpo_text",
}


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trl")
    cfg = small_config(
        root / "small.toml",
        max_tokens=(64, 400),
        **{"domain_settings.geometry": {"max_tokens_instruction": 64, "max_tokens_response": 3}},
    )
    assert main(local_launch(tiny_models, root / "data", ",".join(DOMAINS), COUNT, cfg)) == 0
    (run,) = (root / "data").iterdir()
    return run


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return load_tokenizer(str(tiny_models.deepseek))


@pytest.fixture(scope="module")
def builder(tiny_models, tokenizer) -> PromptBuilder:
    """The generator's own prompt builder: the text and ids the responses stage gave the engine."""
    return PromptBuilder(
        ResolvedModel(
            name=str(tiny_models.deepseek),
            path=str(tiny_models.deepseek),
            family="deepseek_r1",
            tensor_parallel_size=1,
            max_model_len=8192,
        ),
        tokenizer,
    )


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _load(*args, cache: Path, **kwargs):
    from datasets import load_dataset

    return load_dataset(*args, cache_dir=str(cache), **kwargs)["train"]


def _front(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "README.md").read_text().split("---\n")[1])


# --- the standard-format files -------------------------------------------------------------------


def test_standard_sft_file_holds_the_generation_prompt_and_full_response(run_dir, builder, tokenizer):
    seed = _records(run_dir / "algebra" / "algebra_ins_res.json")
    text = _records(run_dir / "algebra" / "algebra_sft_text.json")
    assert len(seed) == COUNT and [r["id"] for r in text] == [r["id"] for r in seed]
    for rec, original in zip(text, seed):
        assert set(rec) == {"id", "prompt", "completion"}
        prompt_text, prompt_ids = builder.response_prompt(original["instruction"])
        assert prompt_text.startswith(BOS) and rec["prompt"] == prompt_text[len(BOS) :]
        assert rec["prompt"].endswith("<｜Assistant｜><think>\n") and BOS not in rec["prompt"]
        # The tokenizer's own BOS makes it exactly the ids the generator was given (one BOS).
        assert tokenizer(rec["prompt"])["input_ids"] == prompt_ids
        assert rec["completion"] == original["response"] + tokenizer.eos_token
        assert "</think>" in rec["completion"] and original["reasoning"] in rec["completion"]
    # The seed's file keeps its name and keys.
    assert {"instruction", "response", "gen_response_configs", "reasoning", "answer"} <= set(seed[0])


def test_standard_dpo_file_pairs_with_the_conversational_one(run_dir, builder, tokenizer):
    for domain in DOMAINS:
        conversational = _records(run_dir / domain / f"{domain}_dpo.json")
        standard = _records(run_dir / domain / f"{domain}_dpo_text.json")
        pref = {r["id"]: r for r in _records(run_dir / domain / f"{domain}_ins_7res_armorm.json")}
        assert conversational and [r["id"] for r in standard] == [r["id"] for r in conversational]
        for std, conv in zip(standard, conversational):
            for key in ("score_chosen", "score_rejected", "margin", "chosen_index", "rejected_index"):
                assert std[key] == conv[key]
            p = pref[std["id"]]
            prompt_text = builder.response_prompt(p["instruction"])[0]
            # prompt + chosen is the generator's prompt (BOS aside, the tokenizer adds it) + full response
            assert (
                std["prompt"] + std["chosen"]
                == prompt_text[len(BOS) :] + p["responses"][std["chosen_index"]] + tokenizer.eos_token
            )
            assert std["rejected"] == p["responses"][std["rejected_index"]] + tokenizer.eos_token


def test_maybe_apply_chat_template_on_both_dpo_variants(run_dir, tokenizer):
    from trl import is_conversational, maybe_apply_chat_template

    conv = _records(run_dir / "algebra" / "algebra_dpo.json")[0]
    std = _records(run_dir / "algebra" / "algebra_dpo_text.json")[0]
    fields = ("prompt", "chosen", "rejected")
    assert is_conversational({k: conv[k] for k in fields}) and not is_conversational({k: std[k] for k in fields})

    # Conversational: the R1 template drops the reasoning and ends the prompt before <think>\n
    # (the documented behaviour the card warns about).
    templated = maybe_apply_chat_template({k: conv[k] for k in fields}, tokenizer)
    assert templated["prompt"].endswith("<｜Assistant｜>")
    full = conv["chosen"][0]["content"]
    reasoning = full.partition("</think>")[0]
    for side in ("chosen", "rejected"):
        assert "</think>" not in templated[side] and "Step 0" not in templated[side]
    assert "</think>" in full and "Step 0" in reasoning

    # Standard: taken as it is, reasoning and <think>\n kept.
    kept = maybe_apply_chat_template({k: std[k] for k in fields}, tokenizer)
    assert kept == {k: std[k] for k in fields}
    assert kept["prompt"].endswith("<think>\n") and "</think>" in kept["chosen"]
    assert kept["chosen"] == full + tokenizer.eos_token


# --- TRL's trainers on the shipped files -----------------------------------------------------------


def _decode_masked(tokenizer, ids, mask) -> str:
    return tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)


def test_sft_trainer_trains_on_the_reasoning(run_dir, tiny_models, tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    dataset = _load("parquet", data_files=str(run_dir / "algebra" / "algebra_sft_text.parquet"), cache=tmp_path / "hf")
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        use_cpu=True,
        max_steps=2,
        report_to="none",
        per_device_train_batch_size=1,
        max_length=None,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = SFTTrainer(model=str(tiny_models.deepseek), processing_class=tokenizer, args=args, train_dataset=dataset)
    example, record = trainer.train_dataset[0], dataset[0]
    trained = _decode_masked(tokenizer, example["input_ids"], [label != -100 for label in example["labels"]])
    reasoning = record["completion"].partition("</think>")[0].removeprefix("<think>\n")
    assert "</think>" in trained and reasoning.strip()[:200] in trained and trained.endswith(tokenizer.eos_token)
    # Exactly one BOS, and the context is the generation prompt.
    assert tokenizer.decode(example["input_ids"]).startswith(BOS + record["prompt"])
    assert example["input_ids"].count(tokenizer.bos_token_id) == 1
    result = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)


def test_dpo_trainer_trains_on_the_reasoning(run_dir, tiny_models, tokenizer, tmp_path):
    from trl import DPOConfig, DPOTrainer

    dataset = _load("parquet", data_files=str(run_dir / "algebra" / "algebra_dpo_text.parquet"), cache=tmp_path / "hf")
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        use_cpu=True,
        max_steps=2,
        report_to="none",
        per_device_train_batch_size=1,
        max_length=None,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = DPOTrainer(model=str(tiny_models.deepseek), processing_class=tokenizer, args=args, train_dataset=dataset)
    example, record = trainer.train_dataset[0], dataset[0]
    assert tokenizer.decode(example["prompt_ids"]) == BOS + record["prompt"]
    for side in ("chosen", "rejected"):
        text = tokenizer.decode(example[f"{side}_ids"])
        assert "</think>" in text and "Step 0" in text.partition("</think>")[0]
        assert text == record[side]  # the whole response with its one EOS, no second one added
    result = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)


# --- load_dataset on everything ------------------------------------------------------------------


def test_empty_table_has_json_but_no_parquet(run_dir):
    folder = run_dir / "geometry"
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info["counts"]["sft_records"] == 0 and info["counts"]["sft_excluded_incomplete"] == COUNT
    assert info["empty_tables"] == ["geometry_ins_res.json", "geometry_sft_text.json"]
    for name in info["empty_tables"]:
        assert (folder / name).read_text() == "[]\n"  # the seed's contract
        assert not (folder / name).with_suffix(".parquet").exists()
    combined = json.loads((run_dir / "combined_dataset_info.json").read_text())
    assert combined["empty_tables"] == {"geometry": info["empty_tables"]}
    assert json.loads((run_dir / "algebra" / "dataset_info.json").read_text())["empty_tables"] == []
    card = (run_dir / "README.md").read_text()
    assert "geometry: `geometry_ins_res.json`, `geometry_sft_text.json`" in card
    configs = {c["config_name"] for c in _front(run_dir)["configs"]}
    assert "geometry_sft" not in configs and "geometry_sft_text" not in configs and "geometry_dpo_text" in configs


def test_every_file_config_and_glob_loads(run_dir, tmp_path):
    cache = tmp_path / "hf"
    tables = [p for p in run_dir.glob("*/*") if p.suffix in (".json", ".parquet") and p.name != "dataset_info.json"]
    assert len(tables) == 2 * 2 * len(KINDS) - 2  # every kind twice per domain, but geometry's empty Parquet
    for path in tables:
        if path.suffix == ".json" and not _records(path):
            continue  # `[]`: `datasets` loads no empty file, the card says so
        loaded = _load("json" if path.suffix == ".json" else "parquet", data_files=str(path), cache=cache)
        twin = _records(path.with_suffix(".json"))
        assert loaded.num_rows == len(twin) > 0 and loaded["id"] == [r["id"] for r in twin], path

    front = _front(run_dir)
    for config in front["configs"]:
        loaded = _load(str(run_dir), config["config_name"], cache=cache)
        files = [config["data_files"]] if isinstance(config["data_files"], str) else config["data_files"]
        assert loaded.num_rows == sum(pq.read_metadata(run_dir / f).num_rows for f in files) > 0
    # The default config: no name needed.
    (default,) = [c for c in front["configs"] if c.get("default")]
    assert default["config_name"] == "sft_text"
    assert _load(str(run_dir), cache=cache)["id"] == _load(str(run_dir), "sft_text", cache=cache)["id"]

    # A glob over one file kind across all domains, empty tables included.
    for kind, suffix in KINDS.items():
        expected = sum(len(_records(run_dir / d / f"{d}_{suffix}.json")) for d in DOMAINS)
        loaded = _load("parquet", data_files=str(run_dir / "*" / f"*_{suffix}.parquet"), cache=cache)
        assert loaded.num_rows == expected > 0, kind


def test_table_writer_removes_a_stale_twin_when_the_table_becomes_empty(tmp_path):
    from magpie_hpc.merge import TableWriter

    with TableWriter(tmp_path / "t.json") as writer:
        writer.write({"id": "a-0"})
    assert (tmp_path / "t.parquet").is_file()
    with TableWriter(tmp_path / "t.json"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]
    assert (tmp_path / "t.json").read_text() == "[]\n"


# --- names and the card --------------------------------------------------------------------------


def test_models_named_without_machine_paths(run_dir, tiny_models):
    machine = str(tiny_models.deepseek.parent)
    for path in run_dir.glob("*/*"):
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist())
        elif path.suffix in (".json", ".md"):
            text = path.read_text()
        else:
            continue
        assert machine not in text, path
    assert machine not in (run_dir / "README.md").read_text()
    assert str(tiny_models.deepseek.resolve()) in (run_dir / "run.json").read_text()  # resume needs it
    rec = _records(run_dir / "algebra" / "algebra_ins_7res_armorm.json")[0]
    assert (
        rec["gen_input_configs"]["input_generator"]
        == rec["gen_response_configs"]["output_generator"]
        == "deepseek-r1-tiny"
    )
    assert rec["reward_model"] == "reward-tiny"
    combined = json.loads((run_dir / "combined_dataset_info.json").read_text())
    assert (combined["model"], combined["reward_model"]) == ("deepseek-r1-tiny", "reward-tiny")


def test_model_label():
    assert model_label("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    snapshot = "/home/u/.cache/huggingface/hub/models--RLHFlow--ArmoRM-Llama3-8B-v0.1/snapshots/abc123"
    assert model_label(snapshot) == "RLHFlow/ArmoRM-Llama3-8B-v0.1"
    assert model_label("/scratch/site/models/my-model/") == "my-model"
    assert model_label("./models/my-model") == "my-model"


def test_card_says_which_file_goes_to_which_trainer(run_dir):
    body = (run_dir / "README.md").read_text().split("---\n", 2)[2]
    section = body.split("## Training with TRL", 1)[1].split("\n## ", 1)[0]
    for words in (
        "`SFTTrainer`",
        "`<domain>_sft_text.json`",
        "`DPOTrainer`",
        "`<domain>_dpo_text.json`",
        "`<domain>_dpo.json`",
        "removes everything up to `</think>`",
        "`<think>\\n`",
        "EOS",
        "`RewardTrainer`",
        "`margin`",
        "-logsigmoid(r_chosen - r_rejected - margin)",
        "answer part only",
        "score_reasoning",
        "default config `sft_text`",
    ):
        assert words in section, words


def test_run_json_without_frozen_eos_still_merges(run_dir, tokenizer, tmp_path):
    """A run launched before the EOS text was frozen into run.json: the merge reads it from the
    tokenizer once, and writes the same files."""
    import shutil

    from magpie_hpc.merge import merge_run

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "run.json").read_text())
    assert manifest["templates"].pop("eos_token") == tokenizer.eos_token
    (copy / "run.json").write_text(json.dumps(manifest))
    merge_run(RunContext(copy))
    for name in ("algebra/algebra_sft_text.json", "algebra/algebra_dpo_text.json"):
        assert _records(copy / name) == _records(run_dir / name)


def test_a_table_that_becomes_empty_on_a_second_merge_loses_its_parquet(run_dir, tmp_path):
    """Merged again with a DPO margin no pair reaches, the DPO tables are empty: their Parquet
    files from the first merge must go (a stale twin would be loaded as the current data), and
    the card and every glob still load."""
    import shutil

    from magpie_hpc.merge import merge_run

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    assert (copy / "algebra" / "algebra_dpo.parquet").is_file()
    manifest = json.loads((copy / "run.json").read_text())
    manifest["config"]["quality"]["dpo_min_margin"] = 1e9
    (copy / "run.json").write_text(json.dumps(manifest))
    merge_run(RunContext(copy))
    for domain in DOMAINS:
        info = json.loads((copy / domain / "dataset_info.json").read_text())
        assert {f"{domain}_dpo.json", f"{domain}_dpo_text.json"} <= set(info["empty_tables"])
        for name in (f"{domain}_dpo", f"{domain}_dpo_text"):
            assert _records(copy / domain / f"{name}.json") == []
            assert not (copy / domain / f"{name}.parquet").exists(), name
    configs = {c["config_name"] for c in _front(copy)["configs"]}
    assert not configs & {"dpo", "dpo_text", "algebra_dpo", "algebra_dpo_text"}
    loaded = _load("parquet", data_files=str(copy / "*" / "*_ins_7res_armorm.parquet"), cache=tmp_path / "hf")
    assert loaded.num_rows == 2 * COUNT
