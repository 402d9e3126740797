"""Iterative RL (DeepSeekMath §4.2) for the GRPO recipe: every K steps the reward model is trained further on
the policy's newest samples, labelled by the sandbox's verdicts, with a share of older labels replayed, and
the learner's reference may be reset to the current policy.

Everything lives under `${output_dir}/rm_iterations/`, so a resumed run picks up where it stopped:
- `labels.jsonl`: every graded sample of the run, with its step (the rows of steps after the checkpoint
  a run resumes from are dropped);
- `step-N/final`: the reward model trained at step N (the scorer's model from then on);
- `reference-N`: the policy at step N, when the reference was reset there.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpo.rollout import Group
from rewards.likelihood_rm import is_likelihood_model
from rewards.problems import Problem
from rewards.reward_model import LabelError, Labelled, parse_labels, read_labels, train_reward_model

DIR = "rm_iterations"


class IterativeRewardModel:
    def __init__(self, spec: DictConfig, out: Path, start_step: int, seed: int) -> None:
        self.spec = spec
        self.dir = out / DIR
        self.labels_file = self.dir / "labels.jsonl"
        self.seed = seed
        self.model = str(spec.model)
        self.older: list[Labelled] = read_labels(spec.iterative.labels) if spec.iterative.labels else []
        self.fresh: list[Labelled] = []
        self.iteration_steps: list[int] = []
        last = 0
        for step in sorted(int(p.name.removeprefix("step-")) for p in self.dir.glob("step-*")):
            if step <= start_step and (self.dir / f"step-{step}" / "final").is_dir():
                self.model, last = str(self.dir / f"step-{step}" / "final"), step
                self.iteration_steps.append(step)
        kept: list[dict[str, Any]] = []
        if self.labels_file.exists():  # a resumed run: keep what the checkpoint had seen
            for line in self.labels_file.read_text().splitlines():
                row = json.loads(line)
                if row["step"] <= start_step:
                    kept.append(row)
                    (self.older if row["step"] <= last else self.fresh).extend(parse_labels([row]))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.labels_file.write_text("".join(json.dumps(r) + "\n" for r in kept))

    @property
    def every(self) -> int:
        return int(self.spec.iterative.every)

    def add(self, step: int, problems: Sequence[Problem], groups: Sequence[Group],
            grades: Sequence[Sequence[Any]]) -> None:  # fmt: skip
        """The step's graded samples become labels, under the prompt the policy (and the scorer) saw; a
        grader failure is no label and is left out."""
        rows = [
            {"step": step, "task_id": p.task_id, "prompt": group.prompt, "completion": c.text, "passed": g.passed,
             "pass_fraction": g.tests_passed / g.tests_total if g.tests_total else float(g.passed)}
            for p, group, gs in zip(problems, groups, grades, strict=True)
            for c, g in zip(group.completions, gs, strict=True)
            if not g.grader_failed
        ]  # fmt: skip
        self.fresh.extend(parse_labels(rows, f"step {step}'s samples"))
        with self.labels_file.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def retrain(self, step: int) -> dict[str, float]:
        """Train the reward model further on the fresh labels plus `replay` of older ones. Returns metrics;
        a one-class set (every fresh sample passed, or none did) is not trained on and says so."""
        replay = float(self.spec.iterative.replay)
        rng = random.Random(self.seed + step)
        wanted = round(len(self.fresh) * replay / (1 - replay)) if replay < 1 else len(self.older)
        replayed = rng.sample(self.older, min(wanted, len(self.older)))
        rows = self.fresh + replayed
        trainer: dict[str, Any] = OmegaConf.to_container(self.spec.iterative.trainer, resolve=True)  # type: ignore[assignment]
        try:
            head = "likelihood" if is_likelihood_model(self.model) else "value"  # the first model's kind
            result = train_reward_model(self.model, rows, self.dir / f"step-{step}", objective=self.spec.iterative.objective,
                                        max_length=self.spec.iterative.max_length, trainer_args=trainer,
                                        seed=self.seed + step, head=head)  # fmt: skip
        except LabelError as e:
            print(f"grpo: step {step}: reward model not retrained: {e}", file=sys.stderr)
            return {"rm_iter/retrained": 0.0, "rm_iter/fresh": float(len(self.fresh))}
        self.model = result.model_dir
        self.iteration_steps.append(step)
        self.older += self.fresh
        metrics = {"rm_iter/retrained": 1.0, "rm_iter/fresh": float(len(self.fresh)),
                   "rm_iter/replayed": float(len(replayed)), "rm_iter/train_loss": result.train_loss}  # fmt: skip
        self.fresh = []
        print(f"grpo: step {step}: reward model trained on {len(rows) - len(replayed)} new and {len(replayed)} "
              f"replayed labels -> {self.model}", file=sys.stderr)  # fmt: skip
        return metrics

    def reference_dir(self, step: int) -> Path:
        return self.dir / f"reference-{step}"

    def last_reference(self, start_step: int) -> Path | None:
        """The policy saved at the last reset at or before `start_step`: a resumed run's reference."""
        steps = [int(p.name.removeprefix("reference-")) for p in self.dir.glob("reference-*")]
        steps = [s for s in steps if s <= start_step]
        return self.reference_dir(max(steps)) if steps else None
