"""Grade a completions file with any grader the config names (Hydra `_target_`), write result rows and a
summary with pass@k.

    python -m recipes.grade completions=samples.jsonl [problems=humaneval] [out=results.jsonl]
    python -m recipes.grade completions=c.jsonl hydra.searchpath=[file://my_configs] grader=my_grader
"""

from __future__ import annotations

import sys
import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.config import recipe_main
from rewards.grade import grade_file, read_completions, read_problems, summary, write_rows


@recipe_main("grade")
def main(cfg: DictConfig) -> None:
    problems, rejected = read_problems(cfg.problems)
    for task_id, reason in rejected.items():
        print(f"skipped problem {task_id}: {reason}", file=sys.stderr)
    completions = read_completions(cfg.completions)
    grader = instantiate(cfg.grader)
    start = time.perf_counter()
    try:
        rows = grade_file(grader, problems, rejected, completions)
    finally:
        if hasattr(grader, "close"):
            grader.close()
    write_rows(rows, cfg.out)
    print(summary(rows, list(cfg.k), time.perf_counter() - start), file=sys.stderr)


if __name__ == "__main__":
    main()
