"""What a name or a SLURM value in the config may be: everything that becomes a path, a job name
or an `#SBATCH` line is checked here, when the config is loaded."""

from __future__ import annotations

import re

# Every name that becomes a path, a SLURM job name or a log file name (domains, stages, run
# labels) matches this: lower-case letters, digits and underscores, starting with a letter, at most
# 32 characters. Checked when the config is loaded, so no name can lead a write outside the run.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# SLURM's own syntax for the values that reach `#SBATCH` lines: names of partitions, accounts and
# QOS are letters, digits, `_`, `.`, `-` (partition and qos also as comma lists); a constraint is
# a feature expression (`a100&ib`, `[rack1|rack2]`, `gpu*2`). Nothing else, no control character.
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
SLURM_NAME_LIST = re.compile(r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*$")
SLURM_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.\-&|,*\[\]():!]+$")
# A path the batch script runs (slurm.python): no spaces or shell metacharacters.
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@%=:,\-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Names a domain cannot take: folders of the run directory itself, and the merge's domain `all`.
RESERVED_NAMES = {"all", "work", "logs", "plots", "tokenizer"}  # folders of the run directory


def check_name(value: str, field: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{field}: {value!r} is not a valid name; use lower-case letters, digits and _ "
            f"(starting with a letter, at most 32 characters: {NAME_PATTERN.pattern})"
        )
    if value in RESERVED_NAMES:
        raise ValueError(f"{field}: {value!r} is reserved ({', '.join(sorted(RESERVED_NAMES))}); choose another name")
    return value


def check_no_control(value: str, field: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{field}: {value!r} contains a control character (newline, tab, ...); remove it")
    return value
