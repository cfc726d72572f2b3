"""The merge's outputs appear together or not at all, and one merge runs at a time per run.

Every output (each domain folder, plots/, combined_dataset_info.json, README.md) is written into a
staging folder inside the run directory, `.merge-staging-<id>/`; only when all are complete are they
renamed into place (replacing the previous merge's files of the same names), after the old merge
marker was removed, and the new marker is written last. A merge that fails or is killed partway leaves the previous outputs and no marker
(`status` then says the merge is not done), never new files beside old ones. A second merge of the
same run (the SLURM merge job and a manual one, say) refuses with one line while the first holds
the run's `.merge.lock`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import MagpieError
from ..store import _fsync_dir, inside

LOCK_NAME = ".merge.lock"
STAGING_PREFIX = ".merge-staging-"


class MergeBusy(MagpieError):
    """Another merge of this run holds its lock."""


@contextmanager
def merge_lock(run_dir: Path) -> Iterator[None]:
    lock = FileLock(str(Path(run_dir) / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise MergeBusy(
            f"merge: another merge of {run_dir} is running (it holds {lock.lock_file}); wait for it "
            "to finish, then rerun if needed"
        ) from None
    try:
        yield
    finally:
        lock.release()


class Staging:
    """A fresh staging folder in the run directory; `publish` moves its entries into place."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        # Left by a merge that was killed: ours, and no merge holds them (we hold the lock).
        for old in self.run_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(old, ignore_errors=True)
        self.dir = inside(self.run_dir, self.run_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
        self.dir.mkdir()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def publish(self, names: list[str]) -> None:
        """Rename each staged file into the run directory, replacing the previous merge's file of
        that name; files that are not the merge's (a note beside the dataset) are left alone."""
        for name in names:
            source = self.dir / name
            if not source.exists():
                continue
            target = inside(self.run_dir, self.run_dir / name)
            if source.is_dir():
                target.mkdir(exist_ok=True)
                for item in sorted(source.iterdir()):
                    os.replace(item, inside(self.run_dir, target / item.name))
                _fsync_dir(target)
            else:
                os.replace(source, target)
        _fsync_dir(self.run_dir)
        self.discard()
