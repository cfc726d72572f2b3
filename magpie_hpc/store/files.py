"""Writing and reading the run directory's files safely: whole files or nothing, JSON whose damage
is one line naming the file (exit 2), and every write path checked to lie inside the run."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from ..errors import ConfigError, CorruptFileError, MagpieError

_CHUNK_BUFFER = 1 << 20


def read_json_file(path: Path, what: str = "", *, kind: type = dict) -> Any:
    """A JSON file of the run directory, or CorruptFileError naming it and what is wrong."""
    what = what or path.name
    try:
        text = path.read_bytes().decode("utf-8")
        value = json.loads(text)
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(
            f"{path}: {what} is damaged (not valid JSON: {_short(exc)}); restore it from a "
            "copy or move the run aside; nothing was changed"
        ) from None
    except OSError as exc:
        raise CorruptFileError(f"{path}: {what} cannot be read ({exc.strerror or exc})") from None
    if not isinstance(value, kind):
        raise CorruptFileError(
            f"{path}: {what} is damaged (a JSON {type(value).__name__}, expected an object); "
            "restore it from a copy or move the run aside; nothing was changed"
        )
    return value


def read_jsonl(path: Path, what: str = "", *, required: tuple[str, ...] = ()) -> list[dict]:
    """Every line of a JSON-lines log as an object; a damaged line is a CorruptFileError naming the
    file and the line. A missing file is an empty log."""
    what = what or path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CorruptFileError(f"{path}: {what} cannot be read ({exc.strerror or exc})") from None
    out = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            value, problem = None, f"line {number} is not valid JSON: {_short(exc)}"
        else:
            missing = [k for k in required if not isinstance(value, dict) or k not in value]
            problem = (
                f"line {number} is not a JSON object"
                if not isinstance(value, dict)
                else f"line {number} lacks {', '.join(missing)}"
                if missing
                else None
            )
        if problem:
            raise CorruptFileError(
                f"{path}: {what} is damaged ({problem}); restore it from a copy or move the "
                "run aside; nothing was changed"
            )
        out.append(value)
    return out


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK_BUFFER):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@functools.lru_cache(maxsize=1 << 16)
def _cached_sha256(path: str, size: int, mtime_ns: int, inode: int) -> tuple[str, int]:
    """file_sha256 once per file version in a process: `status --watch` rereads nothing unchanged."""
    return file_sha256(Path(path))


def inside(root: Path, path: Path) -> Path:
    """`path`, resolved, after checking that it lies under `root`: every path the package writes in
    a run goes through here, so no name (domain, stage, run name) can lead a write elsewhere."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target != base and base not in target.parents:
        raise ConfigError(f"refusing to write {target}: it is outside the run directory {base}")
    return target


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)


def write_atomic(path: Path, data: bytes) -> None:
    """Whole file or nothing: unique temp name, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if _is_disk_full(exc):
            raise MagpieError(f"disk full writing {path}: free space (or quota) and rerun") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def append_line(path: Path, record: dict) -> None:
    """One JSON line per write with O_APPEND: safe with concurrent appenders on one host."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())
