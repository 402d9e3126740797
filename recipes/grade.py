"""Grade a completions file with any grader the config names (Hydra `_target_`), write result rows and a
summary with pass@k.

    python -m recipes.grade completions=samples.jsonl [problems=humaneval] [out=results.jsonl]
    python -m recipes.grade completions=c.jsonl grader._target_=my_pkg.MyGrader ~grader.reward ...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from rewards.grade import read_completions, read_problems, summary
from rewards.grades import Failure, Grade
from rewards.interop import grade_pairs


@hydra.main(config_path="configs", config_name="grade", version_base=None)
def main(cfg: DictConfig) -> None:
    problems, rejected = read_problems(cfg.problems)
    for task_id, reason in rejected.items():
        print(f"skipped problem {task_id}: {reason}", file=sys.stderr)
    completions = read_completions(cfg.completions)
    grader = instantiate(cfg.grader)
    start = time.perf_counter()
    known = [c for c in completions if c["task_id"] in problems]
    grades = iter(
        grade_pairs(grader, [problems[c["task_id"]] for c in known], [c["completion"] for c in known])
    )
    rows, seen = [], {}
    for c in completions:
        seen[c["task_id"]] = seen.get(c["task_id"], -1) + 1
        if c["task_id"] in problems:
            grade = next(grades)
        else:
            reason = rejected.get(c["task_id"], f"no problem has task_id {c['task_id']!r}")
            grade = Grade(False, 0.0, "sandbox_error", 0, 0, Failure(message=reason))
        row = {"task_id": c["task_id"], "completion_id": c.get("completion_id", seen[c["task_id"]])}
        rows.append(row | {k: v for k, v in grade.to_row().items() if k != "extra"})
    if hasattr(grader, "close"):
        grader.close()
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if cfg.out:
        Path(cfg.out).write_text(text)
    else:
        sys.stdout.write(text)
    print(summary(rows, list(cfg.k), time.perf_counter() - start), file=sys.stderr)


if __name__ == "__main__":
    main()
