"""Bad input: one line naming the field and what to do, exit code 2, no run directory."""

from __future__ import annotations

import json

import pytest

from magpie_hpc.cli import main


def _run(args, tmp_path, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--domains", "algebra,topology"], "domains"),
        (["--count", "0"], "count"),
        (["--count", "-5"], "count"),
        (["--counts", "algebra=abc"], "--counts"),
        (["--domains", "algebra", "--counts", "geometry=5"], "--counts"),
        (["--model", "some-org/unknown-model"], "model"),
        (["--model", "/nonexistent/model/dir"], "model"),
        (["--reward-model", "/nonexistent/reward"], "reward_model"),
        (["--config", "/nonexistent.toml"], "--config"),
        (["--profile", "/nonexistent.toml"], "--profile"),
        (["--profile", "no_such_cluster"], "--profile"),
    ],
)
def test_bad_flags(extra, field, synthetic_args, tmp_path, capsys):
    code, err = _run([*synthetic_args, *extra], tmp_path, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert field in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "toml, field",
    [
        ("[domain_settings.algebra]\ninstruction_temperature = -0.5\n", "instruction_temperature"),
        ("[multi_responses]\ntemperature = -1\n", "temperature"),
        ("[engine]\nmax_model_len = 1000\n", "max_model_len"),
        ("[sharding]\nresponses = 0\n", "responses"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ('[slurm]\nprofile = "a100"\n', "slurm.profile"),  # never read: --profile picks a profile
        ("[quality]\ndpo_min_margin = inf\n", "dpo_min_margin"),  # no DPO pair would ever pass
        ("this is = = not toml", "TOML"),
    ],
)
def test_bad_config_file(toml, field, synthetic_args, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    code, err = _run([*synthetic_args, "--config", str(path)], tmp_path, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert field in err
    assert not (tmp_path / "data").exists()


def test_cli_flags_override_file(tmp_path):
    from magpie_hpc.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('seed = 7\ndomains = ["algebra", "geometry"]\n[domain_settings.algebra]\ncount = 11\n')
    cfg = load_config(path, {"seed": 9})
    assert cfg.seed == 9 and cfg.domains == ["algebra", "geometry"] and cfg.domain("algebra").count == 11
    assert cfg.domain("geometry").count == 6000  # untouched preset
    assert load_config(path, {"domains": "all"}, count=3).total_problems == 18


def test_dry_run_writes_nothing(synthetic_args, tmp_path, capsys):
    assert main([*synthetic_args, "--domains", "all", "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"total_problems": 44000' in out
    assert not (tmp_path / "data").exists()


def test_a_tensor_parallel_model_gets_its_gpus_per_task(tmp_path, capsys):
    # Menu entry 2 (70B) runs vLLM over 4 GPUs; the a100 profile asks 1 GPU per task. The
    # generation arrays must ask 4 (or vLLM fails on the node hours later), rewards still 1.
    assert (
        main(
            [
                "launch",
                "--model",
                "2",
                "--domains",
                "algebra",
                "--profile",
                "a100",
                "--dry-run",
                "--json",
                "--output-root",
                str(tmp_path / "data"),
            ]
        )
        == 0
    )
    plan = json.loads(capsys.readouterr().out)
    gpus = {a["stage"]: a["resources"].split()[0] for a in plan["arrays"]}
    assert gpus == {
        "instructions": "gpus=4",
        "select": "gpus=0",
        "responses": "gpus=4",
        "multi_responses": "gpus=4",
        "rewards": "gpus=1",
    }


def test_gpus_per_node_from_sinfo_gres_forms(monkeypatch):
    # Other clusters' sinfo %G spellings (typed gres, socket bindings, other gres kinds).
    from magpie_hpc.slurm import cluster

    monkeypatch.setattr(cluster, "run_cmd", lambda args: "gpu:a100:4(S:0-1),shard:a100:16 gpu:2\n(null)\n")
    assert cluster.max_gres_per_node("gpu") == 4
    monkeypatch.setattr(cluster, "run_cmd", lambda args: "(null)\n")
    assert cluster.max_gres_per_node(None) == 0


def test_unwritable_output_root(synthetic_args, tmp_path, capsys):
    """A read-only filesystem (root can write anywhere else): one line, exit 2, nothing written."""
    import subprocess

    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        args = [a if a != str(tmp_path / "data") else str(mount / "data") for a in synthetic_args]
        code, err = _run([*args, "--count", "2"], tmp_path, capsys)
        assert code == 2 and "output_root" in err and err.count("\n") == 1, err
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
