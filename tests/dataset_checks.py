"""Checks of a finished run directory against the output contract of SPEC.md, shared by the
local, vLLM and SLURM end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

INS_KEYS = {
    "id",
    "pre_query_template",
    "instruction",
    "response",
    "created",
    "gen_input_configs",
    "gen_response_configs",
}
INPUT_CONFIG_KEYS = {"temperature", "top_p", "input_generator", "seed", "domain"}
RESPONSE_CONFIG_KEYS = {
    "prompt",
    "temperature",
    "top_p",
    "repetition_penalty",
    "max_tokens",
    "stop_tokens",
    "output_generator",
    "engine",
}


def stage_rows(run_dir: Path, stage: str, domain: str) -> dict[str, dict]:
    """The committed rows of one stage and domain, by id, as the shards wrote them."""
    rows: dict[str, dict] = {}
    for part in sorted((run_dir / "work" / stage / domain).glob("shard-*/part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            rows[row["id"]] = row
    return rows


def check_run(
    run_dir: Path, counts: dict[str, int], num_responses: int | None = None, sft_nonempty: bool = False
) -> dict:
    """Assert the layout, keys, counts and id uniqueness; return the loaded combined metadata.
    `num_responses`: the run's multi-response count, read from run.json when not given (a caller
    that passes it checks that the run used it). `sft_nonempty`: every domain has SFT records."""
    manifest = json.loads((run_dir / "run.json").read_text())
    if num_responses is None:
        num_responses = manifest["config"]["multi_responses"]["num_responses"]
    assert manifest["config"]["multi_responses"]["num_responses"] == num_responses
    combined = json.loads((run_dir / "combined_dataset_info.json").read_text())
    assert (run_dir / "README.md").is_file()
    assert combined["total_problems"] == sum(counts.values())
    assert set(combined["domains"]) == set(counts)
    files = combined["files_per_domain"]
    assert files == {
        "instructions": "<domain>_ins.json",
        "sft_data": "<domain>_ins_res.json",
        "preference_data": f"<domain>_ins_{num_responses}res_armorm.json",
        "dpo_data": "<domain>_dpo.json",
        "sft_text": "<domain>_sft_text.json",
        "dpo_text": "<domain>_dpo_text.json",
        "info": "dataset_info.json",
    }
    all_ids: set[str] = set()
    for domain, count in counts.items():
        folder = run_dir / combined["domains"][domain]["directory"]
        assert combined["domains"][domain]["problems"] == count
        names = {k: v.replace("<domain>", domain) for k, v in files.items()}
        for name in names.values():  # the metadata names files that exist
            assert (folder / name).is_file(), name
        ins = json.loads((folder / names["instructions"]).read_text())
        assert len(ins) == count
        ids = [r["id"] for r in ins]
        assert len(set(ids)) == count
        assert not (set(ids) & all_ids), "ids must be unique across the run"
        all_ids |= set(ids)
        for rec in ins:
            assert INS_KEYS <= set(rec)
            assert rec["response"] is None and rec["gen_response_configs"] is None
            assert INPUT_CONFIG_KEYS <= set(rec["gen_input_configs"])
            assert rec["gen_input_configs"]["domain"] == domain
            assert isinstance(rec["instruction"], str) and rec["instruction"].strip()
        by_id = {r["id"]: r for r in ins}

        sft = json.loads((folder / names["sft_data"]).read_text())
        sft_ids = [r["id"] for r in sft]
        assert len(sft_ids) == len(set(sft_ids)) and set(sft_ids) <= set(ids)
        if sft_nonempty:
            assert sft, f"{domain}: no SFT record"
        # SFT holds exactly the problems whose single response the responses stage found complete
        # (finished with "stop" and, for a reasoning model, closed </think>), in instruction order.
        responses = stage_rows(run_dir, "responses", domain)
        assert set(responses) == set(ids)
        assert sft_ids == [i for i in ids if responses[i]["complete"][0]]
        for rec in sft:
            assert rec["response"] == responses[rec["id"]]["responses"][0]
            assert INS_KEYS <= set(rec) and isinstance(rec["response"], str)
            assert RESPONSE_CONFIG_KEYS <= set(rec["gen_response_configs"])
            assert rec["instruction"] == by_id[rec["id"]]["instruction"]
            assert rec["finish_reason"] == "stop" and not rec["truncated"]

        pref = json.loads((folder / names["preference_data"]).read_text())
        assert [r["id"] for r in pref] == ids
        for rec in pref:
            assert {"instruction", "responses", "scores", "rewards_armorm", "gen_response_configs"} <= set(rec)
            assert len(rec["responses"]) == num_responses == len(rec["scores"]) == len(rec["rewards_armorm"])
            assert [r["score"] for r in rec["rewards_armorm"]] == rec["scores"]
            assert all(isinstance(s, float) for s in rec["scores"])
            assert len(rec["finish_reasons"]) == num_responses

        info = json.loads((folder / "dataset_info.json").read_text())
        assert info["problem_count"] == count and info["domain"] == domain
        assert combined["summary"][domain] == info["counts"]  # the run summary is the domains' own
        assert info["counts"]["instructions"] == count and info["counts"]["sft_records"] == len(sft)
        assert info["counts"]["sft_records"] + info["counts"]["sft_excluded_incomplete"] == count
        assert info["parameters"]["num_preference_responses"] == num_responses
        for key in ("instructions", "sft_data", "preference_data", "sft_text"):
            assert (folder / info["files"][key]).is_file()
            # The Parquet twin holds the same records in the same order; an empty table has none
            # (`datasets` cannot load a Parquet file without rows) and dataset_info.json says so.
            expected = {"instructions": ids, "sft_data": sft_ids, "preference_data": ids, "sft_text": sft_ids}[key]
            parquet = (folder / info["files"][key]).with_suffix(".parquet")
            assert parquet.is_file() == bool(expected), parquet
            assert (info["files"][key] in info["empty_tables"]) == (not expected)
            if expected:
                assert pq.read_table(parquet).column("id").to_pylist() == expected
    return combined
