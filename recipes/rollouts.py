"""Sample-and-grade for the GRPO and eval recipes, in one process or on Ray.

Both kinds answer `sample_and_grade(problems, group_size, sampling, prompts=None)` (the prompts sampled
from, by default each problem's own) with one group of completions per problem, their grades (a `sandbox_error` is graded once more, and a second one stops the run) and
timings; and `load_weights(named_tensors)` with what the weight sync cost.

- `LocalRollout`: one worker (`hf` or `vllm`) and one grader in this process; the grader runs while
  the worker is idle.
- `RayRollout`: `grpo.ray_pool.RayRolloutPool` of workers in Ray actors and a `RayGraderPool` of
  graders, each holding its own sandbox; groups are graded as soon as they finish generating.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from grpo.rollout import Group, SamplingConfig
from recipes.common import grade_twice, worker_factory
from rewards import Problem


class LocalRollout:
    def __init__(self, make_worker: Callable[[], Any], grader: Any) -> None:
        self.worker = make_worker()
        self.grader = grader

    def sample_and_grade(
        self,
        problems: Sequence[Problem],
        group_size: int,
        sampling: SamplingConfig,
        prompts: Sequence[str] | None = None,
    ) -> tuple[list[Group], list[list[Any]], dict[str, float]]:
        t0 = time.perf_counter()
        prompts = list(prompts) if prompts is not None else [p.prompt for p in problems]
        groups = self.worker.generate(prompts, group_size, sampling)
        t1 = time.perf_counter()
        flat = [(p, c) for p, g in zip(problems, groups, strict=True) for c in g.completions]
        grades = grade_twice(
            self.grader, [p for p, _ in flat], [c.text for _, c in flat], [len(c.token_ids) for _, c in flat]
        )
        t2 = time.perf_counter()
        per_group = [grades[i * group_size : (i + 1) * group_size] for i in range(len(problems))]
        return groups, per_group, {"time/generate_s": t1 - t0, "time/grade_s": t2 - t1}

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> dict[str, float]:
        start = time.perf_counter()
        tensors = list(named_tensors)
        self.worker.load_weights(tensors)
        nbytes = sum(t.numel() * t.element_size() for _, t in tensors)
        return {"sync/seconds": time.perf_counter() - start, "sync/bytes": float(nbytes)}

    def close(self) -> None:
        for part in (self.worker, self.grader):
            if hasattr(part, "close"):
                part.close()


class RayRollout:
    def __init__(
        self, make_worker: Callable[[], Any], make_grader: Callable[[], Any], spec: dict[str, Any]
    ) -> None:
        from grpo.ray_pool import PoolConfig, RayGraderPool, RayRolloutPool, init_ray

        init_ray(spec.get("address"), num_cpus=spec.get("num_cpus"))
        self.pool = RayRolloutPool(make_worker, PoolConfig(**spec["workers"]))
        self.graders = RayGraderPool(make_grader, PoolConfig(**spec["graders"]))

    def sample_and_grade(
        self,
        problems: Sequence[Problem],
        group_size: int,
        sampling: SamplingConfig,
        prompts: Sequence[str] | None = None,
    ) -> tuple[list[Group], list[list[Any]], dict[str, float]]:
        from grpo.ray_pool import sample_and_grade

        prompts = list(prompts) if prompts is not None else [p.prompt for p in problems]
        groups, grades, timeline = sample_and_grade(
            self.pool, self.graders, problems, prompts, group_size, sampling
        )
        for problem, group_grades in zip(problems, grades, strict=True):
            failed = [g for g in group_grades if g.grader_failed]
            if failed:
                raise RuntimeError(
                    f"the grader failed twice on a completion of {problem.task_id}: {failed[0].failure}"
                )
        last_generation = max((end for _, end in timeline.generation), default=0.0)
        return (
            groups,
            grades,
            {
                "time/generate_s": last_generation,
                "time/grade_after_generate_s": timeline.total_s - last_generation,
                "rollout/regraded": float(timeline.regraded),
                "rollout/resubmits": float(self.pool.resubmits),
            },
        )

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> dict[str, float]:
        sync = self.pool.load_weights(named_tensors)
        return {
            "sync/seconds": sync.seconds,
            "sync/bytes": float(sync.bytes),
            "sync/version": float(sync.version),
        }

    def close(self) -> None:
        self.pool.shutdown()
        self.graders.shutdown()


def build_rollout(
    spec: dict[str, Any], policy: str, make_grader: Callable[[], Any]
) -> LocalRollout | RayRollout:
    """From the `rollout` config group: `kind` local or ray, `engine` hf or vllm, and the engine's options."""
    kind, engine = spec.get("kind"), spec.get("engine")
    make_worker = worker_factory(str(engine), policy, spec.get("engine_options"))
    if kind == "local":
        return LocalRollout(make_worker, make_grader())
    if kind == "ray":
        return RayRollout(make_worker, make_grader, spec)
    raise SystemExit(f"error: rollout.kind={kind!r} is not one of local, ray")
