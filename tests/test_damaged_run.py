"""A damaged run directory (issue 18 items 8-12, and a fuzz test of the readers): a chunk that
changed is never counted as done and is redone, never deleted; a stray file is not a chunk; a
damaged run file is one line and exit 2 from every command, with nothing rewritten; merged records
state the settings that produced them; merges are one at a time and publish all or nothing.

One finished run (synthetic engine, local executor) is built per module and copied per test."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import small_config
from magpie_hpc.cli import main
from magpie_hpc.context import RunContext

COUNT = 4
SHARDING = {"instructions": 4, "responses": 2, "multi_responses": 2, "chunk_size": 1}


@pytest.fixture(scope="module")
def launch_args(tiny_models, tmp_path_factory) -> list[str]:
    """The flags the run was launched with (what `launch --resume` is given again)."""
    root = tmp_path_factory.mktemp("finished")
    cfg = small_config(root / "small.toml", sharding=SHARDING)
    return [
        "launch",
        "--executor",
        "local",
        "--engine",
        "synthetic",
        "--model",
        str(tiny_models.deepseek),
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(root / "data"),
        "--domains",
        "algebra",
        "--count",
        str(COUNT),
        "--config",
        str(cfg),
    ]


@pytest.fixture(scope="module")
def finished_run(launch_args) -> Path:
    assert main(launch_args) == 0
    (run_dir,) = Path(launch_args[launch_args.index("--output-root") + 1]).iterdir()
    return run_dir


def resume(launch_args: list[str], run: Path, *extra: str) -> list[str]:
    return [*launch_args, "--resume", str(run), *extra]


@pytest.fixture()
def run(finished_run, tmp_path, monkeypatch) -> Path:
    """A private copy of the finished run; the working directory is an empty sibling folder."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return copy


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outside_untouched(run: Path) -> None:
    """Nothing was created beside the run copy, nor in the working directory."""
    assert sorted(p.name for p in run.parent.iterdir()) == ["cwd", "run"]
    assert list((run.parent / "cwd").iterdir()) == []


def nothing_lost(before: dict[str, bytes], run: Path) -> None:
    """Every file of `before` is still there: unchanged, appended to (a log), or moved aside under
    another name with the same bytes. The merge's published outputs may be rewritten, not removed."""
    after = snapshot(run)
    contents = {hashlib.sha256(b).hexdigest() for b in after.values()}
    merged = ("algebra/", "plots/", "combined_dataset_info.json", "README.md", "work/merge/")
    for name, data in before.items():
        if name in after and after[name].startswith(data):
            continue
        if name.startswith(merged) and name in after:
            continue
        assert hashlib.sha256(data).hexdigest() in contents, f"{name} was lost"


def one_line(err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]


def shard_dir(run: Path, stage: str, shard: int) -> Path:
    return run / "work" / stage / "algebra" / f"shard-{shard:05d}"


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # two bytes flipped in the middle
        middle = len(data) // 2
        data[middle] ^= 0x5A
        data[middle + 1] ^= 0xA5
        path.write_bytes(bytes(data))


# ------------------------------------------------------------------- item 8: a damaged chunk


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("stage", ["responses", "multi_responses"])
def test_a_damaged_chunk_is_never_complete_and_resubmit_redoes_it(stage, how, run, capsys):
    chunk = shard_dir(run, stage, 1) / "part-00000.parquet"
    damage(chunk, how)
    bad = chunk.read_bytes()
    before = snapshot(run)

    assert main(["status", str(run)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[3].strip().startswith("FAILED:"), out
    line = next(line for line in out.splitlines() if ": damaged: " in line)
    assert f"{stage} algebra shard 1" in line and str(chunk) in line
    assert main(["status", "--json", str(run)]) == 1
    status = json.loads(capsys.readouterr().out)
    assert not status["complete"] and [(f["stage"], f["shard"], f["damaged"]) for f in status["failed"]] == [
        (stage, 1, True)
    ]
    assert snapshot(run) == before  # status reads, never repairs

    assert main(["merge", str(run)]) == 3
    one_line(capsys.readouterr().err, f"{stage} algebra shard 1", str(chunk))
    assert snapshot(run) == before  # a refused merge publishes nothing, rewrites nothing

    assert main(["resubmit", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"damaged, redoing: {stage} algebra shard 1: {chunk}" in err
    aside = list(chunk.parent.glob("part-00000.parquet.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad  # moved aside, never deleted
    assert main(["status", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[3].strip().startswith("COMPLETE")
    assert pq.read_table(chunk).num_rows == 1
    if stage == "multi_responses":  # the reward shard that scored the old responses is redone too
        assert list(shard_dir(run, "rewards", 1).glob("part-00000.parquet.corrupt-*"))
    nothing_lost(before, run)
    outside_untouched(run)


def test_launch_resume_redoes_a_damaged_chunk_too(run, launch_args, capsys):
    chunk = shard_dir(run, "responses", 0) / "part-00001.parquet"
    damage(chunk, "flip")
    before = snapshot(run)
    assert main(resume(launch_args, run)) == 0
    assert f"responses algebra shard 0: {chunk}" in capsys.readouterr().err
    assert main(["status", str(run)]) == 0
    nothing_lost(before, run)
    outside_untouched(run)


# ------------------------------------------------------------------- item 9: a stray file


def test_a_stray_file_is_not_a_chunk_and_is_left_alone(run, launch_args, capsys):
    shard = shard_dir(run, "responses", 1)
    (shard / "DONE.json").unlink()  # an unfinished shard
    stray = shard / "part-00000-copy.parquet"
    shutil.copy(shard / "part-00000.parquet", stray)
    stray_bytes, chunk_bytes = stray.read_bytes(), (shard / "part-00000.parquet").read_bytes()
    before = snapshot(run)

    assert main(["status", str(run)]) == 1  # not done: the shard lost its marker
    out = capsys.readouterr().out
    assert f"note: responses algebra shard 1: {stray} is not a file the package writes" in out

    assert main(resume(launch_args, run)) == 0
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "COMPLETE" in out and str(stray) in out  # still reported
    assert stray.read_bytes() == stray_bytes and (shard / "part-00000.parquet").read_bytes() == chunk_bytes
    assert not list(shard.glob("*.corrupt-*"))  # the real chunk was trusted, not set aside
    nothing_lost(before, run)
    outside_untouched(run)


# ---------------------------------------------------------------- item 10: a damaged run file

FILES = {
    "run.json": lambda run: run / "run.json",
    "DONE.json": lambda run: shard_dir(run, "responses", 0) / "DONE.json",
    "attempts.jsonl": lambda run: shard_dir(run, "multi_responses", 1) / "attempts.jsonl",
    "jobs.jsonl": lambda run: run / "jobs.jsonl",
    "near_duplicates.json": lambda run: run / "work" / "select" / "algebra" / "near_duplicates.json",
}
COMMANDS = {
    "status": lambda run: ["status", str(run)],
    "report": lambda run: ["report", str(run)],
    "merge": lambda run: ["merge", str(run)],
    "resubmit": lambda run: ["resubmit", str(run)],
    "resume": lambda run: ["launch", "--resume", str(run)],
}


@pytest.mark.parametrize("kind", FILES)
def test_a_damaged_run_file_is_one_line_and_exit_2_from_every_command(kind, run, capsys):
    path = FILES[kind](run)
    if kind == "jobs.jsonl":
        path.write_text('{"stage": "responses", "domain": "algebra", "shards": [0], "job_id": "1"}\n{"stage": "res')
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + b"\x00}")
    before = snapshot(run)
    for command, argv in COMMANDS.items():
        code = main(argv(run))
        err = capsys.readouterr().err
        assert code == 2, (command, err)
        one_line(err, str(path), "damaged")
        assert snapshot(run) == before, f"{command} rewrote something"
    outside_untouched(run)


def test_not_a_run_directory_is_exit_2_from_every_command(tmp_path, capsys):
    for argv in COMMANDS.values():
        assert main(argv(tmp_path)) == 2
        one_line(capsys.readouterr().err, "not a magpie-hpc run directory")


# ------------------------------------------------- item 11: records state their own settings


def test_records_state_the_settings_that_generated_them(run, launch_args, capsys):
    """A sampling change accepted with --resume --force applies to what is generated from then on;
    the re-merged records keep stating the settings their responses were generated with."""
    multi, rewards = shard_dir(run, "multi_responses", 1), shard_dir(run, "rewards", 1)
    old = run / "work" / "old"
    old.mkdir()
    for folder in (multi, rewards):  # redo one multi-response shard (and its scores) under new settings
        shutil.move(folder, old / folder.parent.parent.name)
    cfg = small_config(run.parent / "changed.toml", sharding=SHARDING, multi_responses={"temperature": 0.35})
    assert main(resume(launch_args, run, "--force", "--config", str(cfg))) == 0
    capsys.readouterr()
    records = json.loads((run / "algebra" / "algebra_ins_7res_armorm.json").read_text())
    by_id = {r["id"]: r["gen_response_configs"]["temperature"] for r in records}
    # shard 0 holds problems 0-1 (generated at the default 0.8), shard 1 problems 2-3 (at 0.35)
    assert {i: by_id[i] for i in sorted(by_id)} == {
        **{f"algebra-{i}": 0.8 for i in (0, 1) if f"algebra-{i}" in by_id},
        **{f"algebra-{i}": 0.35 for i in (2, 3) if f"algebra-{i}" in by_id},
    }
    assert {0.8, 0.35} <= set(by_id.values())
    combined = json.loads((run / "combined_dataset_info.json").read_text())
    temps = [c["temperature"] for c in combined["generation_configs"]["multi_responses"]["algebra"]]
    assert temps == [0.8, 0.35]
    card = (run / "README.md").read_text()
    assert "multi_responses / algebra (2 configurations)" in card and '"temperature": 0.35' in card
    # the SFT records were generated before the change and say so too
    sft = json.loads((run / "algebra" / "algebra_ins_res.json").read_text())
    assert {r["gen_response_configs"]["temperature"] for r in sft} == {0.05}


# ------------------------------------------- item 12: one merge at a time, published together


def test_a_second_merge_refuses_while_one_holds_the_run(run, capsys):
    from filelock import FileLock

    before = snapshot(run)
    with FileLock(str(run / ".merge.lock"), timeout=0):
        assert main(["merge", str(run)]) == 1
        one_line(capsys.readouterr().err, "another merge", str(run))
    assert snapshot(run) == before
    assert main(["merge", str(run)]) == 0
    outside_untouched(run)


def test_a_merge_that_crashes_partway_publishes_nothing(run, capsys, monkeypatch):
    import magpie_hpc.merge.run as merge

    (run / "algebra" / "NOTES.txt").write_text("kept: not a file the merge writes\n")
    before = snapshot(run)

    def crash(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(merge, "write_plots", crash)  # after every domain's files were written
    with pytest.raises(OSError):
        merge.merge_run(RunContext(run))
    assert snapshot(run) == before  # the old outputs, with the old marker, and no new file beside them
    assert not [p for p in run.iterdir() if p.name.startswith(".merge-")]
    monkeypatch.undo()
    assert main(["merge", str(run)]) == 0
    assert main(["status", str(run)]) == 0
    info = json.loads((run / "algebra" / "dataset_info.json").read_text())
    combined = json.loads((run / "combined_dataset_info.json").read_text())
    assert info["generation_date"] == combined["generation_date"]  # published together
    assert (run / "algebra" / "NOTES.txt").read_text().startswith("kept")
    outside_untouched(run)


def test_plots_of_two_merges_at_once_never_share_a_temp_file(tmp_path):
    from magpie_hpc.report.plots import PLOTS, DomainSamples, write_plots

    samples = {"algebra": DomainSamples()}
    samples["algebra"].instruction_tokens.extend([10, 20, 30])
    results, errors = [], []

    def draw():
        try:
            results.append(
                write_plots(
                    tmp_path,
                    samples,
                    {"algebra": {"truncation_rate": 0.1, "sft_excluded_rate": 0, "agreement_rate": 0.5}},
                )
            )
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [list(PLOTS)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOTS)


# --------------------------------------------------------------- the run-directory readers, fuzzed

FUZZ_KINDS = {
    "chunk": lambda run: shard_dir(run, "multi_responses", 0) / "part-00001.parquet",
    "select chunk": lambda run: run / "work" / "select" / "algebra" / "shard-00000" / "part-00000.parquet",
    "instruction chunk": lambda run: shard_dir(run, "instructions", 0) / "part-00000.parquet",
    "chunks.jsonl": lambda run: shard_dir(run, "rewards", 1) / "chunks.jsonl",
    "DONE.json": lambda run: shard_dir(run, "responses", 1) / "DONE.json",
    "attempts.jsonl": lambda run: shard_dir(run, "responses", 0) / "attempts.jsonl",
    "run.json": lambda run: run / "run.json",
    "near_duplicates.json": lambda run: run / "work" / "select" / "algebra" / "near_duplicates.json",
}
FUZZ_CASES = 6  # per file kind: half truncations, half byte flips


@pytest.mark.parametrize("kind", FUZZ_KINDS)
def test_fuzzed_run_files_never_crash_never_count_as_done_never_delete(
    kind, finished_run, tmp_path, monkeypatch, capsys
):
    rng = random.Random(f"issue18-{kind}")
    monkeypatch.chdir(tmp_path)
    for case in range(FUZZ_CASES):
        run = tmp_path / f"case{case}"
        shutil.copytree(finished_run, run)
        path = FUZZ_KINDS[kind](run)
        data = bytearray(path.read_bytes())
        if case % 2 == 0:
            data = data[: rng.randrange(0, len(data))]
        else:
            for _ in range(rng.choice((1, 2, 3))):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(data))
        before = snapshot(run)
        for argv in (["status", str(run)], ["merge", str(run)], ["report", str(run)]):
            code = main(argv)  # never raises: every problem is one line and an exit code
            out, err = capsys.readouterr()
            assert "Traceback" not in err and code in (0, 1, 2, 3), (kind, case, argv, code, err)
            if code == 2:
                one_line(err, "")
            if kind.endswith("chunk") and argv[0] != "report":
                assert code != 0, (kind, case, argv, out, err)  # a changed chunk is never done
            missing = set(before) - set(snapshot(run))
            assert not missing, (kind, case, argv, missing)
        shutil.rmtree(run)
