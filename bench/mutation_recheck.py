"""Re-test the mutants that survived a bench/mutation.sh run against the tests as they are now:
each diff of mutation/NAME-survivors.txt is applied to a copy of the repository, the given tests
run, and the diff is taken back. Prints KILLED or SURVIVES per mutant.

    python bench/mutation_recheck.py NAME TEST_ARGS...
    python bench/mutation_recheck.py store tests/test_store.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(name: str, tests: list[str]) -> int:
    text = (Path(os.environ.get("OUT", REPO / "mutation")) / f"{name}-survivors.txt").read_text()
    blocks = re.split(r"(?m)^--- ([0-9a-f]{32}) ", text)[1:]
    survived = 0
    with tempfile.TemporaryDirectory(prefix="magpie-recheck.") as copy:
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(f"tar --null -T - -cf - | tar -xf - -C {copy}", shell=True, cwd=REPO, input=files, check=True)
        env = {**os.environ, "PYTHONPATH": copy, "PYTHONDONTWRITEBYTECODE": "1"}
        for head, body in zip(blocks[::2], blocks[1::2]):
            what = body.splitlines()[0]
            diff = body.split("--- mutation diff ---\n", 1)[1]
            subprocess.run(["patch", "-p1", "-s"], input=diff, text=True, cwd=copy, check=True)
            try:
                result = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-x",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        "--hypothesis-seed=0",
                        f"--basetemp={copy}/pt",
                        *tests,
                    ],
                    cwd=copy,
                    env=env,
                    capture_output=True,
                    text=True,
                )
            finally:
                subprocess.run(["patch", "-p1", "-R", "-s"], input=diff, text=True, cwd=copy, check=True)
            survived += result.returncode == 0
            print("SURVIVES" if result.returncode == 0 else "KILLED  ", head, what)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
