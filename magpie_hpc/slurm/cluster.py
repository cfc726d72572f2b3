"""Thin wrappers over the SLURM command-line tools. The only module that runs them."""

from __future__ import annotations

import shutil
import subprocess

from ..errors import MagpieError


# MaxArraySize when slurm.conf does not set it (caps the array index at 1000).
DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmError(MagpieError):
    pass


def run_cmd(args: list[str], timeout: float = 60) -> str:
    if shutil.which(args[0]) is None:
        raise SlurmError(f"{args[0]} is not on PATH; run this on a SLURM login node (or use --executor local)")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(args)} did not answer in {timeout:.0f}s; is slurmctld up?") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SlurmError(f"{' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def max_array_size() -> int:
    """MaxArraySize caps the array *index* (largest index = MaxArraySize - 1)."""
    for line in run_cmd(["scontrol", "show", "config"]).splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    return DEFAULT_MAX_ARRAY_SIZE


def partitions() -> set[str]:
    return {p.rstrip("*") for p in run_cmd(["sinfo", "-h", "-o", "%P"]).split()}


def gres_kinds(partition: str | None) -> set[str]:
    args = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    kinds = set()
    for item in run_cmd(args).replace(",", " ").split():
        if item != "(null)":
            kinds.add(item.split(":")[0])
    return kinds


def max_gres_per_node(partition: str | None, kind: str = "gpu") -> int:
    """The most of a gres one node offers: sinfo's `gpu:2`, `gpu:a100:4`, `gpu:a100:4(S:0-1)`."""
    args = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    most = 0
    for item in run_cmd(args).replace(",", " ").split():
        fields = item.split("(")[0].split(":")
        if fields[0] == kind and fields[-1].isdigit():
            most = max(most, int(fields[-1]))
    return most


def node_groups(partition: str | None) -> list[tuple[str, str]]:
    """(gres, features) of each group of like nodes: sinfo's %G and %f, e.g. ('gpu:a100:4', 'a100,80gb')."""
    args = ["sinfo", "-h", "-o", "%G|%f"] + (["-p", partition] if partition else [])
    groups = []
    for line in run_cmd(args).splitlines():
        gres, _, features = line.strip().partition("|")
        if gres:
            groups.append((gres, "" if features == "(null)" else features))
    return groups


def account_exists(account: str) -> bool:
    return bool(run_cmd(["sacctmgr", "-n", "-P", "show", "account", account, "format=Account"]).strip())


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        run_cmd(["scancel", *job_ids])
