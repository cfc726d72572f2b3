"""Loading a config: defaults < cluster profile < TOML file < CLI flags, each failure one
`ConfigError` line that names the field."""

from __future__ import annotations

import math
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..pipeline import PIPELINE
from .run import RunConfig


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith(f"{field}:") or ":" in msg.split(" ")[0]:
        return msg
    return f"{field}: {msg} (got {err.get('input')!r})"


def _profiles_folder() -> Traversable:
    # Inside the package, so that an installed magpie-hpc finds them from any directory.
    return resources.files("magpie_hpc") / "profiles"


def shipped_profiles() -> list[str]:
    """The names `--profile` takes besides a path: the profiles in magpie_hpc/profiles/."""
    return sorted(
        entry.name.removesuffix(".toml") for entry in _profiles_folder().iterdir() if entry.name.endswith(".toml")
    )


def profile_path(name: str) -> Path | Traversable:
    """A cluster profile: a path, or the name of a shipped one (`a100` -> magpie_hpc/profiles/a100.toml)."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    shipped = shipped_profiles()
    if name not in shipped:
        raise ConfigError(
            f"--profile: {name!r} is neither a file nor a shipped profile ({', '.join(shipped)}); "
            "pass one of those or the path of a TOML file"
        )
    return _profiles_folder() / f"{name}.toml"


def _read_toml(path: Path | Traversable, flag: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{flag}: no such file {path}; pass an existing TOML file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{flag}: {path} is not valid TOML ({exc}); fix the file") from exc


def load_config(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
    count: int | None = None,
    profile: str | None = None,
) -> RunConfig:
    """Defaults < cluster profile < TOML file < CLI overrides. `count` sets every chosen domain,
    `counts` some."""
    data: dict[str, Any] = RunConfig().model_dump(mode="python")
    if profile is not None:
        data = _deep_merge(data, _read_toml(profile_path(profile), "--profile"))
    if config_file is not None:
        data = _deep_merge(data, _read_toml(Path(config_file), "--config"))
    data = _deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        chosen = RunConfig.model_validate(data).domains
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    for name in counts or {}:
        if name not in data["domain_settings"]:
            raise ConfigError(f"--counts: unknown domain {name!r}; choose from {','.join(data['domain_settings'])}")
        if name not in chosen:
            raise ConfigError(f"--counts: {name} is not among --domains {','.join(chosen)}; add it there")
    for name in chosen:
        new = count if count is not None else (counts or {}).get(name)
        if new is not None:
            if new <= 0:
                raise ConfigError(f"count: must be > 0 for {name} (got {new}); pass a positive --count")
            data["domain_settings"][name] = {**data["domain_settings"][name], "count": new}
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    check_plan_size(cfg)
    return cfg


def check_plan_size(cfg: RunConfig) -> None:
    """Refuse a plan of more than sharding.max_shards shards per stage, counted arithmetically
    (the plan itself is a list of every shard)."""
    from ..plan import shard_size  # here, not at the top: plan imports RunConfig from this package

    for domain in cfg.domains:
        count = cfg.domain(domain).count
        for key in sorted({s.sharding for s in PIPELINE if s.sharding}):
            size = shard_size(cfg, key, domain)
            shards = math.ceil(count / size)
            if shards > cfg.sharding.max_shards:
                raise ConfigError(
                    f"sharding.max_shards: {domain} {key} would have {shards:,} shards ({count:,} problems, {size:,} "
                    f"per shard), above {cfg.sharding.max_shards:,}; raise sharding.{key} or lower the count"
                )


def parse_counts(text: str) -> dict[str, int]:
    """`algebra=100,geometry=50` -> {"algebra": 100, "geometry": 50}."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            number = int(value)
        except ValueError:
            raise ConfigError(f"--counts: {item!r} is not DOMAIN=N; write e.g. algebra=100,geometry=50") from None
        if name.strip() in counts:
            raise ConfigError(f"--counts: {name.strip()} is given twice; give each domain once")
        counts[name.strip()] = number
    return counts
