"""No package of magpie_hpc/ below the coverage floor: reads coverage.py's JSON report and the
floor (`[tool.coverage.report] fail_under`) from pyproject.toml; exit 1 naming each package under it.

    python hpc/coverage_floor.py coverage.json

A package is a folder of magpie_hpc/ (magpie_hpc itself holds its top-level modules); its figure is
coverage.py's own total, statements and branches together, over its files.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_of(path: str) -> str:
    parts = Path(path).parts
    inner = parts[len(parts) - 1 - parts[::-1].index("magpie_hpc") : -1]  # folders from magpie_hpc down
    return ".".join(inner)


def package_totals(report: dict) -> dict[str, float]:
    sums: dict[str, list[int]] = {}
    for path, data in report["files"].items():
        s = data["summary"]
        acc = sums.setdefault(package_of(path), [0, 0])
        acc[0] += s["covered_lines"] + s.get("covered_branches", 0)
        acc[1] += s["num_statements"] + s.get("num_branches", 0)
    return {pkg: 100.0 * hit / total if total else 100.0 for pkg, (hit, total) in sorted(sums.items())}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python hpc/coverage_floor.py COVERAGE_JSON", file=sys.stderr)
        return 2
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["coverage"]["report"]["fail_under"]
    totals = package_totals(json.loads(Path(argv[0]).read_text()))
    low = {pkg: pct for pkg, pct in totals.items() if pct < floor}
    for pkg, pct in totals.items():
        print(f"coverage {pkg:<22} {pct:5.1f}%{'  BELOW FLOOR' if pkg in low else ''}")
    if low:
        print(
            f"coverage: {', '.join(low)} below the floor of {floor}% (pyproject.toml fail_under); add tests for them",
            file=sys.stderr,
        )
        return 1
    print(f"coverage: every package at or above {floor}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
