"""Hostile input at launch (issue 18 items 2, 3, 5, 6, 7): names that would become paths, values
that would reach the batch script, plans too big to hold, values that would only fail on a compute
node, and flags that contradict each other. Each is refused with one line naming the field, exit
code 2, and nothing is written: no run folder, nothing outside where the run would have gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import small_config
from magpie_hpc.cli import main


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """The working directory is an empty folder: anything written relative to it shows up here."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _refused(args, capsys, *names: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for name in names:
        assert name in err, err
    return err


def _nothing_written(tmp_path: Path, sandbox: Path, *outside: Path) -> None:
    assert not (tmp_path / "data").exists()
    assert list(sandbox.iterdir()) == []
    for path in outside:
        assert not path.exists(), path


# ---------------------------------------------------------------- item 2: a name becomes a path


@pytest.mark.parametrize("name", ["{escape}", "../../x", "Algebra", "a b", "a\nb", "logs", "work", "x" * 40, "9lives"])
def test_a_domain_name_that_is_not_a_plain_name_is_refused(name, synthetic_args, tmp_path, sandbox, capsys):
    escape = tmp_path / "escaped"
    name = name.format(escape=escape)
    cfg = tmp_path / "evil.toml"
    cfg.write_text(
        f"domains = [{json.dumps(name)}]\n[domain_settings.{json.dumps(name)}]\ncount = 2\n"
        "instruction_temperature = 1.0\nresponse_temperature = 0.1\ndescription = 'd'\nfocus = 'f'\n"
    )
    err = _refused([*synthetic_args, "--config", str(cfg), "--count", "2"], capsys, "domain")
    assert "[a-z][a-z0-9_]" in err or "reserved" in err
    _nothing_written(tmp_path, sandbox, escape, tmp_path.parent / "x")


def test_a_hand_edited_run_json_cannot_lead_a_write_outside_the_run(synthetic_args, tmp_path, sandbox, capsys):
    """launch checks names; a run.json edited afterwards is checked again by every command (the
    same validators), and the store refuses any shard path outside the run directory."""
    from magpie_hpc.errors import ConfigError
    from magpie_hpc.store import RunStore

    cfg = small_config(tmp_path / "small.toml")
    assert main([*synthetic_args, "--domains", "algebra", "--count", "2", "--config", str(cfg)]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["config"]["domains"] = ["../../x"]
    manifest["config"]["domain_settings"]["../../x"] = manifest["config"]["domain_settings"]["algebra"]
    (run_dir / "run.json").write_text(json.dumps(manifest))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for command in (
        ["status", str(run_dir)],
        ["merge", str(run_dir)],
        ["resubmit", str(run_dir)],
        ["launch", "--resume", str(run_dir)],
    ):
        err = _refused(command, capsys, "run.json", "domains")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    with pytest.raises(ConfigError, match="outside the run directory"):
        RunStore(run_dir).shard("responses", "../../../x", 0)
    assert "../../x" in err or "domains" in err


# ------------------------------------------------------- item 3: a value reaches the sbatch script


@pytest.mark.parametrize(
    "field, value",
    [
        ("qos", "normal\n#SBATCH --time=1"),
        ("qos", "normal\nrm -rf ~"),
        ("partition", "gpu\tx"),
        ("partition", "gpu;id"),
        ("account", "lab$(id)"),
        ("account", "a b"),
        ("constraint", "a100\n"),
        ("constraint", "a100 `id`"),
        ("python", "/usr/bin/python3; id"),
        ("python", "/usr/bin/py\nthon"),
    ],
)
def test_a_value_bound_for_sbatch_is_refused_naming_the_field(field, value, synthetic_args, tmp_path, sandbox, capsys):
    cfg = tmp_path / "slurm.toml"
    cfg.write_text(f"[slurm]\n{field} = {json.dumps(value)}\n")
    small = [*synthetic_args, "--domains", "algebra", "--count", "2", "--config", str(cfg)]
    _refused(small, capsys, f"slurm.{field}")
    _refused([*small, "--dry-run"], capsys, f"slurm.{field}")
    _nothing_written(tmp_path, sandbox)


def test_slurm_syntax_that_is_valid_is_accepted(tmp_path):
    from magpie_hpc.config import load_config
    from magpie_hpc.slurm.submit import check_submission, submission_values

    cfg_file = tmp_path / "ok.toml"
    cfg_file.write_text(
        '[slurm]\npartition = "gpu,gpu-long"\naccount = "lab.ai-1"\nqos = "high"\n'
        'constraint = "a100&[rack1|rack2]"\npython = "/opt/env-3.11/bin/python"\n'
        'setup = ["module load cuda/12.1 && echo $HOME"]\n'
    )
    cfg = load_config(cfg_file)
    check_submission(submission_values(cfg, "/scratch/run_1", "model_Algebra_20260101_000000"))


def test_a_model_folder_name_with_a_newline_never_reaches_a_job_name(tiny_models, tmp_path, sandbox, capsys):
    """The run folder (and so every job and log name) is named after the model folder: a newline or
    shell characters in that name are replaced, and the submitter checks again what it sends."""
    from magpie_hpc.context import RunContext
    from magpie_hpc.errors import ConfigError
    from magpie_hpc.slurm.submit import Submitter, check_submission, job_name

    evil = tmp_path / "models" / "evil\n#SBATCH --time=1;id"
    shutil.copytree(tiny_models.deepseek, evil)
    args = [
        "launch",
        "--executor",
        "local",
        "--engine",
        "synthetic",
        "--model",
        str(evil),
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(tmp_path / "data"),
        "--domains",
        "algebra",
        "--count",
        "2",
        "--config",
        str(small_config(tmp_path / "s.toml")),
    ]
    assert main(args) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "data" and "\n" not in run_dir.name and ";" not in run_dir.name
    check_submission({"job_name": job_name(run_dir.name, "responses", "algebra")})
    assert list(sandbox.iterdir()) == []
    # run.json edited to carry a newline into the job name: the submitter refuses before sbatch.
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["run_name"] = "x\n#SBATCH --time=1"
    (run_dir / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="job_name"):
        Submitter(RunContext(run_dir), max_array_size=1001)


# ------------------------------------------------------------- item 5: bounds and a failed launch


def test_a_count_too_large_is_refused_before_any_plan_is_built(synthetic_args, tmp_path, sandbox, capsys):
    for extra in (["--counts", "algebra=1000000000000"], ["--counts", "algebra=1000000000000", "--dry-run"]):
        _refused([*synthetic_args, "--domains", "algebra", *extra], capsys, "count", "100000000")
    _nothing_written(tmp_path, sandbox)


def test_a_plan_of_too_many_shards_is_refused_with_the_reason(synthetic_args, tmp_path, sandbox, capsys):
    cfg = small_config(tmp_path / "tiny_shards.toml", sharding={"responses": 1})
    for extra in ([], ["--dry-run"]):
        _refused(
            [*synthetic_args, "--domains", "algebra", "--count", "100000001", "--config", str(cfg), *extra],
            capsys,
            "count",
        )
        _refused(
            [*synthetic_args, "--domains", "algebra", "--count", "200000", "--config", str(cfg), *extra],
            capsys,
            "sharding.max_shards",
            "200,000 shards",
            "sharding.responses",
        )
    _nothing_written(tmp_path, sandbox)


def test_a_launch_that_fails_before_any_work_leaves_no_run_folder(
    synthetic_args, tmp_path, sandbox, capsys, monkeypatch
):
    from magpie_hpc.errors import MagpieError
    from magpie_hpc.executors.local import LocalExecutor

    def refuse(self, run_dir):
        raise MagpieError("sbatch: error: Batch job submission failed: Invalid account")

    monkeypatch.setattr(LocalExecutor, "launch", refuse)
    root = tmp_path / "deep" / "er" / "data"
    code = main([*synthetic_args[:-1], str(root), "--domains", "algebra", "--count", "2"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: sbatch"), err
    assert not (tmp_path / "deep").exists()  # neither the run folder nor the folders made for it
    assert list(sandbox.iterdir()) == []


# ---------------------------------------------- item 6: what would only fail inside a running task


@pytest.mark.parametrize(
    "toml, field",
    [
        ('[engine]\ndtype = "float128"\n', "engine.dtype"),
        ("[domain_settings.algebra]\ninstruction_temperature = inf\n", "instruction_temperature"),
        ("[domain_settings.algebra]\nresponse_temperature = nan\n", "response_temperature"),
        ("[multi_responses]\ntemperature = inf\n", "multi_responses.temperature"),
        ("[multi_responses]\ntop_p = nan\n", "multi_responses.top_p"),
    ],
)
def test_values_that_would_fail_on_the_compute_node_are_refused_at_launch(
    toml, field, synthetic_args, tmp_path, sandbox, capsys
):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    _refused([*synthetic_args, "--domains", "algebra", "--count", "2", "--config", str(cfg)], capsys, field)
    _nothing_written(tmp_path, sandbox)


# ---------------------------------------------------------------- item 7: contradictory flags


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--count", "3", "--counts", "algebra=2"], ("--count", "--counts")),
        (["--domains", "algebra,geometry", "--counts", "algebra=2,algebra=5"], ("--counts", "algebra", "twice")),
        (["--dry-run", "--resume", "{run}"], ("--dry-run", "--resume")),
        (["--force"], ("--force", "--resume")),
        (["--domains", "all,algebra"], ("domains", "all")),
    ],
)
def test_contradictory_flags_are_refused(extra, names, synthetic_args, tmp_path, sandbox, capsys):
    extra = [e.format(run=tmp_path / "some_run") for e in extra]
    err = _refused(
        [*synthetic_args, *extra] + ([] if "--count" in extra or "--counts" in extra else ["--count", "2"]),
        capsys,
        *names,
    )
    assert "unknown domain" not in err
    _nothing_written(tmp_path, sandbox, tmp_path / "some_run")
