"""bench/mutation.sh's helper on a cosmic-ray session database.

mutation_sample.py DB N DEFINITIONS SEED   keep a seeded sample of N pending mutants (N=all: all)
                                           within DEFINITIONS (comma-separated enclosing function
                                           or class names; empty: the whole module), mark the
                                           others skipped
mutation_sample.py --report DB NAME MODULE BASELINE
                                           one table row on stdout, survivors' diffs on stderr
"""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

OUT_OF_SCOPE = "out of scope (bench/mutation.sh definitions)"
ANNOTATION = "equivalent: in a type annotation, never evaluated (from __future__ import annotations)"
NOT_SAMPLED = "not sampled (bench/mutation.sh MUTANTS)"


def _annotation_spans(module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation of the module, where its source postpones them all."""
    source = module.read_text()
    tree = ast.parse(source)
    if "from __future__ import annotations" not in source:
        return []
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            nodes.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            nodes.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in nodes]


def _in_annotation(mutation, spans) -> bool:
    start = tuple(mutation.start_pos)
    return any(a <= start < b for a, b in spans)


def sample(db_path: str, n: str, definitions: str, seed: str) -> None:
    wanted = {d for d in definitions.split(",") if d}
    with use_db(db_path, WorkDB.Mode.open) as db:
        # Ordered by what the mutant is (job ids are random): the same seed draws the same mutants.
        items = sorted(
            db.pending_work_items,
            key=lambda i: [
                (str(m.module_path), tuple(m.start_pos), m.operator_name, m.occurrence) for m in i.mutations
            ],
        )
        spans = _annotation_spans(Path(items[0].mutations[0].module_path)) if items else []
        for item in [i for i in items if all(_in_annotation(m, spans) for m in i.mutations)]:
            db.set_result(item.job_id, WorkResult(output=ANNOTATION, worker_outcome=WorkerOutcome.SKIPPED))
            items.remove(item)
        in_scope = [i for i in items if not wanted or any(m.definition_name in wanted for m in i.mutations)]
        for item in items:
            if item not in in_scope:
                db.set_result(item.job_id, WorkResult(output=OUT_OF_SCOPE, worker_outcome=WorkerOutcome.SKIPPED))
        chosen = in_scope if n == "all" else random.Random(int(seed)).sample(in_scope, min(int(n), len(in_scope)))
        ids = {i.job_id for i in chosen}
        for item in in_scope:
            if item.job_id not in ids:
                db.set_result(item.job_id, WorkResult(output=NOT_SAMPLED, worker_outcome=WorkerOutcome.SKIPPED))
        print(f"mutation: {len(chosen)} of {len(in_scope)} mutants in scope ({len(items)} in the module)")


def report(db_path: str, name: str, module: str, baseline: str) -> None:
    counts = dict.fromkeys(("scope", "run", "killed", "survived", "timeout", "incompetent", "annotation"), 0)
    with use_db(db_path, WorkDB.Mode.open) as db:
        items = {i.job_id: i for i in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED and result.output == OUT_OF_SCOPE:
                continue
            if result.worker_outcome == WorkerOutcome.SKIPPED and result.output == ANNOTATION:
                counts["annotation"] += 1
                continue
            counts["scope"] += 1
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            counts["run"] += 1
            if result.test_outcome == TestOutcome.KILLED and result.output == "timeout":
                counts["timeout"] += 1  # cosmic-ray reports a run past its timeout as killed
            elif result.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            elif result.test_outcome == TestOutcome.INCOMPETENT or result.worker_outcome != WorkerOutcome.NORMAL:
                counts["incompetent"] += 1
            else:
                counts["survived"] += 1
                m = items[job_id].mutations[0]
                print(
                    f"--- {job_id} {m.operator_name} line {m.start_pos[0]} in {m.definition_name}\n{result.diff}\n",
                    file=sys.stderr,
                )
    caught = counts["killed"] + counts["timeout"]
    valid = counts["run"] - counts["incompetent"]
    score = f"{100 * caught / valid:.0f}%" if valid else "-"
    print(
        f"| {name} | `{module}` | {counts['scope']} | {counts['annotation']} | {counts['run']} | {counts['killed']} "
        f"| {counts['survived']} | {counts['timeout']} | {counts['incompetent']} | {score} | {baseline} |"
    )


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(*sys.argv[2:6])
    else:
        sample(*sys.argv[1:5])
