"""Label the policy's own samples with the sandbox: the data a reward model learns from.

    python -m recipes.label policy=runs/sft/final [problems.split=heldout] [out=labels.jsonl]

For each problem: G completions from the policy, graded on the hidden tests (the label: `passed`,
`pass_fraction`, `verdict`) and on the public tests alone (`public_passed`). `prompt_format=chat` asks
an instruct model for the whole function in its chat template, as `recipes.eval` does; each row's
`prompt` is the text the policy saw, so a reward model scores what the policy was asked. Rows are
appended to `out` one round of prompts at a time; a rerun keeps what is there and labels only the
problems not yet done. A completion the grader failed on (`sandbox_error`) is graded once more, and if it fails again
the run stops: it is not a label.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.common import (
    check_model,
    format_prompts,
    grade_twice,
    make_worker,
    read_problems,
    sampling_config,
)
from recipes.config import ConfigError, recipe_main, require_counts
from rewards import Problem


def done_task_ids(out: Path, group_size: int) -> set[str]:
    """Problems with all `group_size` rows already in `out`. The file is rewritten without the rows of
    problems a killed run left half done (and without a torn last line), which are labelled again. A file
    that is not labels of `group_size` samples per problem is refused, never rewritten."""
    if not out.exists():
        return set()
    lines = out.read_text(errors="replace").splitlines()
    counts: Counter[str] = Counter()
    rows: list[tuple[str, str]] = []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                break  # the run was killed mid-write
            raise ConfigError(
                f"out={out}: line {i} is not JSON (a killed run tears only the last line); mend the file, "
                "or pass overwrite=true to label from scratch"
            ) from None
        if not isinstance(row, dict) or not {"task_id", "completion", "passed"} <= row.keys():
            raise ConfigError(
                f"out={out}: line {i} is not a label row (task_id, completion, passed); is out= the file "
                "meant? overwrite=true replaces it"
            )
        counts[str(row["task_id"])] += 1
        rows.append((str(row["task_id"]), line))
    usual = counts.most_common(1)[0][1] if counts else group_size
    if usual != group_size:
        raise ConfigError(
            f"out={out} holds labels of {usual} samples per problem, and group_size={group_size}: set "
            f"group_size={usual} to continue them, or overwrite=true to label again"
        )
    done = {task for task, n in counts.items() if n >= group_size}
    out.write_text("".join(line + "\n" for task, line in rows if task in done))
    return done


def label_rows(
    problem: Problem, prompt: str, texts: Sequence[str], hidden: Sequence[Any], public: Sequence[Any]
) -> list[dict]:
    rows = []
    for i, (text, h, p) in enumerate(zip(texts, hidden, public, strict=True)):
        rows.append({
            "task_id": problem.task_id, "completion_id": i, "prompt": prompt, "completion": text,
            "passed": h.passed, "pass_fraction": h.tests_passed / h.tests_total if h.tests_total else 0.0,
            "verdict": h.verdict, "tests_passed": h.tests_passed, "tests_total": h.tests_total,
            "public_passed": p.passed, "public_verdict": p.verdict,
            "failure": h.to_row()["failure"],
        })  # fmt: skip
    return rows


def run(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    require_counts(cfg, "group_size", "prompts_per_round")
    check_model(str(cfg.policy))  # before `out` is touched
    if cfg.overwrite and out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    problems = read_problems(cfg.problems)
    done = done_task_ids(out, cfg.group_size)
    todo = [p for p in problems if p.task_id not in done]
    prompts, stop = format_prompts(cfg.prompt_format, str(cfg.policy), todo, cfg.sampling.stop)
    print(f"label: {len(problems)} problems, {len(done)} already labelled in {out}, {len(todo)} to go",
          file=sys.stderr)  # fmt: skip
    if not todo:
        return out
    worker = make_worker(cfg.engine, str(cfg.policy))
    sampling = sampling_config(cfg.sampling, stop=stop)
    hidden = instantiate(cfg.grader, split="hidden")
    public = instantiate(cfg.grader, split="public")
    start, passed, total = time.perf_counter(), 0, 0
    try:
        for r in range(0, len(todo), cfg.prompts_per_round):
            chunk, shown = todo[r : r + cfg.prompts_per_round], prompts[r : r + cfg.prompts_per_round]
            groups = worker.generate(shown, cfg.group_size, sampling)
            flat = [(p, c.text) for p, g in zip(chunk, groups, strict=True) for c in g.completions]
            probs, texts = [p for p, _ in flat], [t for _, t in flat]
            h, pub = grade_twice(hidden, probs, texts), grade_twice(public, probs, texts)
            rows = [row for i, p in enumerate(chunk) for row in label_rows(
                p, shown[i], texts[i * cfg.group_size : (i + 1) * cfg.group_size],
                h[i * cfg.group_size : (i + 1) * cfg.group_size], pub[i * cfg.group_size : (i + 1) * cfg.group_size])]  # fmt: skip
            with out.open("a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
            passed += sum(row["passed"] for row in rows)
            total += len(rows)
            print(f"label: {r + len(chunk)}/{len(todo)} problems, pass rate {passed / total:.3f}, "
                  f"{time.perf_counter() - start:.0f}s", file=sys.stderr)  # fmt: skip
    finally:
        for g in (hidden, public):
            if hasattr(g, "close"):
                g.close()
        if hasattr(worker, "close"):
            worker.close()
    return out


@recipe_main("label")
def main(cfg: DictConfig) -> None:
    print(f"labels: {run(cfg)}")


if __name__ == "__main__":
    main()
