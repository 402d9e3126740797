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

from recipes.config import ConfigError, recipe_main
from rewards.grade import grade_file, is_new_file_path, read_completions, read_problems, summary, write_rows


@recipe_main("grade")
def main(cfg: DictConfig) -> None:
    if any(not isinstance(k, int) or k < 1 for k in cfg.k):
        raise ConfigError(f"k={list(cfg.k)}: every k of pass@k must be 1 or more")
    if cfg.out and not is_new_file_path(cfg.out):
        raise ConfigError(f"out={cfg.out}: not a file in an existing folder")
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
