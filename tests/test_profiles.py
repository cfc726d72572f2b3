"""Cluster profiles ship inside the package: a wheel carries them (and py.typed), an installed
magpie-hpc finds `--profile a100` from any directory, and a name that is not a profile is one line
naming the shipped ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from magpie_hpc.cli import main
from magpie_hpc.config import RunConfig, load_config, shipped_profiles
from magpie_hpc.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["a100", "devcluster"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources, so the build leaves nothing in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "magpie_hpc", src / "magpie_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # No index and no build isolation: the build uses the environment's setuptools, offline.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        # not measured: coverage in the build's processes would count the copy as a second, unrun package
        env={k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_START"},
    )
    (built,) = out.glob("magpie_hpc-*.whl")
    return built


def test_the_wheel_carries_the_profiles_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "magpie_hpc/py.typed",
        "magpie_hpc/status_schema.json",
        "magpie_hpc/config/__init__.py",
        *(f"magpie_hpc/profiles/{name}.toml" for name in SHIPPED),
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"


def test_an_installed_package_loads_a_profile_by_name_from_any_directory(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import json, magpie_hpc; from magpie_hpc.config import load_config; cfg = load_config(profile='a100'); "
        "print(json.dumps([magpie_hpc.__file__, cfg.slurm.partition, cfg.slurm.constraint, cfg.hardware.gpu]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=elsewhere,
        env={"PYTHONPATH": str(site), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    package_file, partition, constraint, gpu = json.loads(done.stdout)
    assert Path(package_file).is_relative_to(site)  # the wheel's copy, not the checkout's
    assert (partition, constraint, gpu) == ("gpu", "a100", "A100-80GB")


def test_shipped_profiles_are_the_package_folder():
    assert shipped_profiles() == SHIPPED
    for name in SHIPPED:
        cfg = load_config(profile=name)
        assert cfg.executor == "slurm" and cfg.slurm.partition is not None


@pytest.mark.parametrize("name", ["a10", "../magpie_hpc/profiles/a100", "slurm_templates/a100"])
def test_an_unknown_profile_names_the_shipped_ones(name):
    with pytest.raises(ConfigError) as err:
        load_config(profile=name)
    message = str(err.value)
    assert message.startswith("--profile: ") and "\n" not in message
    assert all(shipped in message for shipped in SHIPPED), message


def test_an_unknown_profile_on_the_command_line_is_one_line(tmp_path, capsys):
    code = main(["launch", "--profile", "a10", "--dry-run", "--output-root", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "a100, devcluster" in err, err
    assert not (tmp_path / "data").exists()


def test_a_profile_path_still_works(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[slurm]\npartition = "long"\n')
    assert load_config(profile=str(path)).slurm.partition == "long"


def test_a_run_json_frozen_with_the_retired_slurm_profile_still_loads():
    # Every run.json written while SlurmConfig had a (never read) `profile` field holds it as null.
    frozen = RunConfig().model_dump(mode="json")
    frozen["slurm"]["profile"] = None
    assert RunConfig.model_validate(frozen) == RunConfig()
    frozen["slurm"]["profile"] = "a100"  # a value was never honoured: refused, not silently dropped
    with pytest.raises(ValueError, match="profile"):
        RunConfig.model_validate(frozen)
