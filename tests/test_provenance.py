"""Provenance (magpie_hpc/provenance.py): model revisions, package versions without heavy imports,
git and SLURM versions tolerated absent, the record in run.json / combined_dataset_info.json / the
card, and `launch --resume` refusing changed versions unless --force."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from helpers import local_launch, small_config
from magpie_hpc import provenance
from magpie_hpc.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_cache_snapshot_hash_is_the_revision(tmp_path) -> None:
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert provenance.model_revision(str(snapshot)) == {
        "path": str(snapshot),
        "revision": "0123abcd",
        "source": "hf-cache",
    }
    link = tmp_path / "model-link"  # a symlink into the cache counts too
    link.symlink_to(snapshot)
    assert provenance.model_revision(str(link))["revision"] == "0123abcd"


def test_local_folder_hash_covers_config_and_tokenizer_only(tmp_path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "tokenizer_config.json").write_text('{"chat_template": "a"}')
    (model / "model.safetensors").write_bytes(b"weights")
    first = provenance.model_revision(str(model))
    assert first["source"] == "sha256" and first["revision"].startswith("sha256:")
    (model / "model.safetensors").write_bytes(b"other weights")  # not read: too large in real models
    assert provenance.model_revision(str(model)) == first
    (model / "tokenizer_config.json").write_text('{"chat_template": "b"}')
    assert provenance.model_revision(str(model))["revision"] != first["revision"]
    # a file moved from one name to another is a different model
    (model / "generation_config.json").write_text((model / "config.json").read_text())
    (model / "config.json").unlink()
    assert provenance.model_revision(str(model))["revision"] != first["revision"]
    assert provenance.model_revision("org/not-downloaded") == {
        "path": "org/not-downloaded",
        "revision": None,
        "source": "unavailable",
    }


def test_package_versions_read_metadata_without_importing() -> None:
    code = (
        "import sys, json; from magpie_hpc.provenance import package_versions; v = package_versions(); "
        "print(json.dumps([v, [m for m in ('torch', 'vllm', 'transformers', 'submitit') if m in sys.modules]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    versions, imported = json.loads(out.stdout)
    assert imported == []  # metadata only: the login node never pays for importing torch
    assert versions["torch"] == metadata.version("torch")
    assert versions["transformers"] == metadata.version("transformers")
    assert versions["submitit"] == metadata.version("submitit")
    assert set(versions) == {"vllm", "torch", "transformers", "submitit", "magpie-hpc"}
    assert versions["magpie-hpc"]


def test_git_and_slurm_are_recorded_or_tolerated_absent(tmp_path, monkeypatch) -> None:
    git = provenance.git_commit()
    if (REPO / ".git").exists():  # this checkout (CI clones it): the commit of HEAD
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        assert git is not None and git["commit"] == head
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sinfo").write_text("#!/bin/sh\necho 'slurm 23.11.4'\n")
    (fake / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert provenance.slurm_version() == "23.11.4"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sinfo, no git
    assert provenance.slurm_version() is None
    assert provenance.git_commit() is None or not (REPO / ".git").exists()


def test_differences_name_what_changed() -> None:
    old = {
        "model": {"revision": "a"},
        "reward_model": {"revision": "r"},
        "packages": {"torch": "2.3.0", "vllm": None},
        "slurm": "22.05",
        "magpie_hpc_git": {"commit": "x"},
    }
    assert provenance.provenance_differences(old, old) == []
    new = {
        **old,
        "model": {"revision": "b"},
        "packages": {"torch": "2.4.0", "vllm": "0.6.0"},
        "slurm": "23.11",
        "magpie_hpc_git": {"commit": "y"},
    }
    assert provenance.provenance_differences(old, new) == [
        "model revision a -> b",
        "torch 2.3.0 -> 2.4.0",
        "vllm None -> 0.6.0",
    ]


def test_recorded_on_launch_merged_and_checked_on_resume(tiny_models, tmp_path, capsys) -> None:
    cfg = small_config(tmp_path / "c.toml", max_tokens=(48, 48))
    assert main(local_launch(tiny_models, tmp_path / "data", "algebra", 2, cfg)) == 0
    (run,) = (tmp_path / "data").iterdir()
    manifest = json.loads((run / "run.json").read_text())
    prov = copy.deepcopy(manifest["provenance"])
    assert prov["model"] == provenance.model_revision(manifest["model"]["path"])
    assert prov["model"]["source"] == "sha256" and prov["reward_model"]["revision"].startswith("sha256:")
    assert prov["model"]["revision"] != prov["reward_model"]["revision"]
    assert prov["packages"] == provenance.package_versions()
    combined = json.loads((run / "combined_dataset_info.json").read_text())
    assert combined["provenance"]["model"] == prov["model"] and combined["provenance"]["packages"] == prov["packages"]
    # the synthetic engine ran on no GPU: every stage says so
    assert combined["provenance"]["stage_gpus"] == {
        s: ["none"] for s in ("instructions", "select", "responses", "multi_responses", "rewards")
    }
    card = (run / "README.md").read_text()
    assert (
        "## Provenance" in card and prov["model"]["revision"] in card and f"torch {prov['packages']['torch']}" in card
    )

    def resume(*flags: str) -> int:
        return main(
            [
                "launch",
                "--resume",
                str(run),
                "--executor",
                "local",
                "--engine",
                "synthetic",
                "--model",
                str(tiny_models.deepseek),
                "--reward-model",
                str(tiny_models.reward),
                "--output-root",
                str(tmp_path / "data"),
                "--domains",
                "algebra",
                "--count",
                "2",
                "--config",
                str(cfg),
                *flags,
            ]
        )

    capsys.readouterr()
    assert resume() == 0  # nothing changed
    # As if launched with another torch and another model revision:
    manifest["provenance"]["packages"]["torch"] = "1.0.0"
    manifest["provenance"]["model"]["revision"] = "sha256:old"
    (run / "run.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert resume() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model revision sha256:old -> " + prov["model"]["revision"] in err and "torch 1.0.0 -> " in err
    assert "--force" in err
    assert json.loads((run / "run.json").read_text())["provenance"]["packages"]["torch"] == "1.0.0"  # untouched
    assert resume("--force") == 0
    after = json.loads((run / "run.json").read_text())
    assert after["provenance"]["packages"]["torch"] == prov["packages"]["torch"]
    (entry,) = after["provenance_history"]
    assert entry["previous"]["packages"]["torch"] == "1.0.0" and any("torch" in d for d in entry["differences"])
    assert resume() == 0  # recorded now: the next resume passes


def test_runs_from_before_provenance_resume() -> None:
    assert provenance.reconcile_provenance({"model": {"path": "x"}, "reward_model_path": "y"}, force=False) is None
