"""Errors the CLI turns into one line and an exit code, instead of a traceback."""

from functools import partial


class MagpieError(Exception):
    """A problem the user can fix; the message says what to do. Exit code 1."""

    exit_code = 1


class ConfigError(MagpieError):
    """Bad input caught before anything runs or is written. Exit code 2."""

    exit_code = 2


class IncompleteRunError(MagpieError):
    """The merge found shards that are not done; the message lists them."""

    exit_code = 3


class CorruptFileError(ConfigError):
    """A file of the run directory (run.json, DONE.json, a .jsonl log, near_duplicates.json) that
    cannot be read: the message names the file and what is wrong; nothing is rewritten. Exit code 2."""


class DamagedShardError(IncompleteRunError):
    """A done shard whose committed chunk no longer matches what was recorded when it was committed
    (truncated, bytes changed, missing): the message names the shard and the file. `resubmit` (or
    `launch --resume`) moves the chunk aside and redoes the shard."""


class RerunUpstream(MagpieError):
    """A shard found its upstream's output short and reopened upstream shards for more: running
    `shards` of `stage` again, then this shard, completes it. The local executor does that at once;
    on SLURM the task fails and `resubmit` submits the reopened shards and this one."""

    def __init__(self, message: str, *, stage: str, domain: str, shards: list[int]):
        super().__init__(message)
        self.stage, self.domain, self.shards = stage, domain, list(shards)

    def __reduce__(self):  # a SLURM task's result is pickled: keep the keyword fields through it
        return partial(type(self), stage=self.stage, domain=self.domain, shards=self.shards), self.args
