"""The whole DAG through the local executor on the synthetic engine: layout, keys, exact counts,
unique ids, idempotent and resumable stage functions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from helpers import small_config
from dataset_checks import check_run
from magpie_hpc.cli import main
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.store import RunStore


def _launch(args: list[str], capsys) -> Path:
    assert main(args) == 0
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def test_all_domains_local_synthetic(synthetic_args, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml")
    run_dir = _launch([*synthetic_args, "--domains", "all", "--count", "5", "--config", str(cfg)], capsys)
    assert run_dir.name.startswith("deepseek-r1-tiny_AllDomains_")
    combined = check_run(run_dir, {d: 5 for d in json.loads((run_dir / "run.json").read_text())["config"]["domains"]})
    assert combined["dataset_name"] == "Magpie-Math-Complete-HLE-30"
    # 5 problems at shard size 2 -> 3 response shards: the pipeline really sharded.
    assert len(list((run_dir / "work" / "responses" / "algebra").iterdir())) == 3
    # The synthetic engine plants defects; cleaning dropped some and the count stayed exact.
    drops = {}
    for shard in (run_dir / "work" / "instructions").glob("*/shard-*"):
        for reason, n in json.loads((shard / "DONE.json").read_text()).get("drop_reasons", {}).items():
            drops[reason] = drops.get(reason, 0) + n
    assert drops, "expected the planted defects to be dropped"


def test_counts_flag_and_subset_naming(synthetic_args, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml")
    run_dir = _launch(
        [*synthetic_args, "--domains", "algebra,geometry", "--counts", "algebra=3,geometry=6", "--config", str(cfg)],
        capsys,
    )
    assert "_Algebra-Geometry_" in run_dir.name
    combined = check_run(run_dir, {"algebra": 3, "geometry": 6})
    assert combined["dataset_name"] == "Magpie-Math-Subset-HLE-9"
    info = json.loads((run_dir / "geometry" / "dataset_info.json").read_text())
    assert info["dataset_name"] == "Magpie-Geometry-HLE-6"
    # Instruction records carry the recorded seed of their own sample (defect 4): distinct per
    # sample, and the shards' seeds never overlap.
    ins = json.loads((run_dir / "geometry" / "geometry_ins.json").read_text())
    chosen = pq.read_table(run_dir / "work" / "select" / "geometry" / "shard-00000" / "part-00000.parquet")
    store = RunStore(run_dir)
    shard_rows = {s: store.shard("instructions", "geometry", s).read_all().to_pylist() for s in (0, 1)}
    for rec, shard, sample in zip(ins, chosen["source_shard"].to_pylist(), chosen["source_sample"].to_pylist()):
        assert rec["gen_input_configs"]["seed"] == shard_rows[shard][sample]["seed"]
    seeds = [rec["gen_input_configs"]["seed"] for rec in ins]
    assert len(set(seeds)) == len(seeds)
    assert not ({r["seed"] for r in shard_rows[0]} & {r["seed"] for r in shard_rows[1]})


def test_stage_functions_are_idempotent_and_resume(synthetic_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "small.toml", sharding={"instructions": 4, "responses": 3, "multi_responses": 2, "chunk_size": 2}
    )
    run_dir = _launch([*synthetic_args, "--domains", "calculus", "--count", "5", "--config", str(cfg)], capsys)
    shard_dir = run_dir / "work" / "multi_responses" / "calculus" / "shard-00000"
    before = {p: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    done = json.loads((shard_dir / "DONE.json").read_text())
    # A second call on a finished shard does nothing.
    assert run_shard(RunContext(run_dir), "multi_responses", "calculus", 0) == done
    assert {p: p.stat().st_mtime_ns for p in shard_dir.iterdir()} == before

    # A shard with 3 problems and chunk size 2 has 2 chunks: lose the last one and the marker,
    # as a kill between commit and marker would; the rerun redoes only that chunk.
    shard_dir = run_dir / "work" / "responses" / "calculus" / "shard-00000"
    first, last = sorted(shard_dir.glob("part-*.parquet"))
    kept_mtime = first.stat().st_mtime_ns
    ids_before = pq.read_table(last)["id"].to_pylist()
    last.unlink()
    (shard_dir / "DONE.json").unlink()
    summary = run_shard(RunContext(run_dir), "responses", "calculus", 0)
    assert summary["resumed_at_chunk"] == 1 and summary["rows"] == 3
    assert first.stat().st_mtime_ns == kept_mtime
    assert pq.read_table(last)["id"].to_pylist() == ids_before

    # A torn chunk is set aside and redone, not trusted.
    last.write_bytes(last.read_bytes()[:20])
    (shard_dir / "DONE.json").unlink()
    assert run_shard(RunContext(run_dir), "responses", "calculus", 0)["rows"] == 3
    assert list(shard_dir.glob("part-00001.parquet.corrupt-*"))
    assert main(["merge", str(run_dir)]) == 0
    check_run(run_dir, {"calculus": 5})


def test_merge_refuses_incomplete_run(synthetic_args, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml")
    run_dir = _launch([*synthetic_args, "--domains", "discrete", "--count", "3", "--config", str(cfg)], capsys)
    (run_dir / "work" / "rewards" / "discrete" / "shard-00001" / "DONE.json").unlink()
    assert main(["merge", str(run_dir)]) == 3
    err = capsys.readouterr().err
    assert "rewards discrete shard 1" in err and err.count("\n") == 1


def test_merge_refuses_a_shard_whose_ids_are_wrong_and_leaves_no_partial_files(synthetic_args, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml", sharding={"responses": 2, "chunk_size": 1})
    run_dir = _launch([*synthetic_args, "--domains", "discrete", "--count", "4", "--config", str(cfg)], capsys)
    for out in (run_dir / "discrete").iterdir():
        out.unlink()
    (run_dir / "combined_dataset_info.json").unlink()
    # A chunk swapped for its neighbour: every shard is done, but ids 2 and 3 are out of order.
    shard = run_dir / "work" / "responses" / "discrete" / "shard-00001"
    a, b = sorted(shard.glob("part-*.parquet"))
    swap = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(swap)
    # Each chunk no longer matches the record made when it was committed: damaged, named.
    assert main(["merge", str(run_dir)]) == 3
    err = capsys.readouterr().err
    assert "responses discrete shard 1" in err and "(damaged)" in err and err.count("\n") == 1
    # Records rewritten to match (as a writer that committed the wrong rows would have made them):
    # the id check still refuses.
    from magpie_hpc.store import file_sha256

    log = shard / "chunks.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for rec in lines:
        rec["sha256"], rec["bytes"] = file_sha256(shard / f"part-{rec['index']:05d}.parquet")
    log.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    assert main(["merge", str(run_dir)]) == 3
    err = capsys.readouterr().err
    assert "responses discrete shard 1 does not hold exactly ids discrete-2..discrete-3" in err
    # Outputs are staged and published together: the domain folder is as it was (emptied above),
    # no staging folder is left, and the run is not marked merged.
    assert sorted(p.name for p in (run_dir / "discrete").iterdir()) == []
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".merge-")]
    assert not (run_dir / "combined_dataset_info.json").exists()


def test_table_writer_writes_json_dumps_layout_and_parquet(tmp_path):
    from magpie_hpc.merge import TableWriter

    records = [
        {"id": "a-0", "text": 'é \u2028 "q" \\', "scores": [0.5, -1.25], "nested": {"k": None}, "empty": []},
        {"id": "a-1", "text": "", "scores": [], "nested": {"k": "v"}, "empty": []},
    ]
    with TableWriter(tmp_path / "t.json") as writer:
        for r in records:
            writer.write(r)
    expected = (
        "["
        + ",".join("\n  " + json.dumps(r, indent=2, ensure_ascii=False).replace("\n", "\n  ") for r in records)
        + "\n]\n"
    )
    assert (tmp_path / "t.json").read_text(encoding="utf-8") == expected
    assert pq.read_table(tmp_path / "t.parquet").to_pylist() == records
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.parquet"]


def test_three_responses_and_cut_off_answers_stay_out_of_sft(synthetic_args, tmp_path, capsys):
    # Response budgets of 60 words cut many synthetic answers (2-40 steps of 9 words) before their
    # </think>: those problems must be left out of SFT, and the preference file follows n=3.
    cfg = small_config(tmp_path / "small.toml", max_tokens=(64, 60), multi_responses={"num_responses": 3})
    run_dir = _launch([*synthetic_args, "--domains", "algebra", "--count", "6", "--config", str(cfg)], capsys)
    check_run(run_dir, {"algebra": 6}, num_responses=3)
    folder = run_dir / "algebra"
    assert (folder / "algebra_ins_3res_armorm.json").is_file() and not (
        folder / "algebra_ins_7res_armorm.json"
    ).exists()
    pref = json.loads((folder / "algebra_ins_3res_armorm.json").read_text())
    assert all(len(r["responses"]) == len(r["complete"]) == 3 for r in pref)
    counts = json.loads((folder / "dataset_info.json").read_text())["counts"]
    assert counts["sft_excluded_incomplete"] > 0 and counts["sft_records"] > 0
    sft = json.loads((folder / "algebra_ins_res.json").read_text())
    assert all("</think>" in r["response"] and r["finish_reason"] == "stop" for r in sft)
