"""Rollout and grading on a Ray cluster: `RayRolloutPool`, `RayGraderPool` and `sample_and_grade`.

The only module of the package that imports ray (DESIGN.md section 2). Workers stay plain classes;
they are built inside actors by a factory the caller gives (`functools.partial(VLLMWorker, "tiny")`,
or a Hydra `instantiate` of a config), with resources from `PoolConfig`.

- `RayRolloutPool` is a `RolloutWorker`: the learner cannot tell one worker from forty. It gives each
  actor one contiguous shard of the prompts and merges the groups back in prompt order. Each actor
  streams its groups back as its engine finishes them (a Ray streaming generator over the worker's
  `generate_stream`), so grading starts before generation ends without cutting the engine's batch.
- Weight sync goes through Ray's object store: one `put` of the learner's weights, one `get` in each
  actor, which hands them to its worker's `load_weights`. Each call reports its time and bytes. An
  actor that Ray restarted comes back with the weights it was built with; the pool sends the current
  weights' version with every shard, and an actor that is behind loads them before it generates.
- Fault tolerance: actors are started with Ray's `max_restarts`. When an actor dies, the prompts of
  its shard that had not come back are logged (actor, node, cause) and resubmitted to a live actor,
  so a step still returns every sample.
- `RayGraderPool` holds one grader per actor (a `TestCaseGrader` with its own `LocalSandbox` or
  `DockerSandbox`, or any plug-in grader), spread over the nodes. `sample_and_grade` sends each group
  to a grader as soon as it is generated, and grades a `sandbox_error` completion a second
  time (on another actor when there is one): it is never dropped and never scored as a wrong answer.

Not built: an NCCL broadcast group for weight sync on GPU clusters. The object-store path works there
too (the bytes go through host memory), and `WeightSync` reports what it costs.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from grpo.rollout import Group, RolloutWorker, SamplingConfig, in_prompt_order

log = logging.getLogger(__name__)

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class RayUnavailableError(ConnectionError):
    """Ray could not be started or joined; the message names the address and the cause."""


class WorkerStartError(RuntimeError):
    """An actor of a pool did not start; the message names the actor and the cause."""


def init_ray(address: str | None = None, *, num_cpus: int | None = None, timeout_s: float = 60.0) -> None:
    """Start a local Ray instance (`address=None`) or join one (`"auto"`, `"host:port"`, `"ray://..."`).

    Does nothing when Ray is already initialised. An address that does not answer is refused after a
    TCP probe of at most `timeout_s` seconds, rather than left to Ray's own minutes of retries.
    """
    if ray.is_initialized():
        return
    # Ray 2.60 otherwise writes an auth token (DESIGN.md section 6).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address not in (None, "", "local", "auto"):
        _probe(address, timeout_s)
    try:
        ray.init(
            address=address or None,
            num_cpus=num_cpus if not address else None,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "a new local instance" if not address else f"address {address!r}"
        raise RayUnavailableError(f"Ray is not reachable at {where}: {e}") from e


def _probe(address: str, timeout_s: float) -> None:
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"Ray address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayUnavailableError(f"Ray is not reachable at address {address!r}: {e}") from e


@dataclass(frozen=True)
class PoolConfig:
    """Where and how many actors a pool starts, and how it treats the ones that die."""

    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0  # a vLLM worker with tensor_parallel_size k needs k
    placement_strategy: str = "SPREAD"  # of the placement group, used when the cluster has several nodes
    max_restarts: int = 2  # Ray restarts a dead actor this many times
    max_resubmits: int = 2  # prompts whose actor died are resubmitted at most this many times
    start_timeout_s: float = 900.0  # for every actor to build its worker (a vLLM engine takes 30-60 s)
    resource_timeout_s: float = 60.0  # for resources that other actors hold to be freed
    env_vars: dict[str, str] = field(default_factory=dict)  # set in every actor's environment

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(
                f"placement_strategy {self.placement_strategy!r} is not one of {', '.join(PLACEMENT_STRATEGIES)}"
            )


@dataclass(frozen=True)
class WeightSync:
    """What one weight sync cost: seconds from the `put` until every actor had loaded, and bytes put."""

    seconds: float
    bytes: int
    workers: int
    version: int


def _where() -> dict[str, Any]:
    """Where the calling actor runs, and whether Ray restarted it."""
    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "pid": os.getpid(),
        "restarted": context.was_current_actor_reconstructed,
    }


class _WorkerHost:
    """Runs inside an actor: builds the worker, loads weights when it is behind, and generates."""

    def __init__(self, make_worker: Callable[[], RolloutWorker]) -> None:
        self.worker = make_worker()
        self.version = 0

    def where(self) -> dict[str, Any]:
        return _where()

    def load_weights(self, version: int, box: list[ray.ObjectRef]) -> int:
        if version != self.version:
            weights: dict[str, torch.Tensor] = ray.get(box[0])
            self.worker.load_weights(weights.items())
            self.version = version
        return self.version

    def generate(
        self,
        prompts: list[str],
        group_size: int,
        sampling: SamplingConfig,
        version: int,
        box: list[ray.ObjectRef] | None,
    ) -> Iterator[list[tuple[int, Group]]]:
        if box is not None:
            self.load_weights(version, box)
        yield from self.worker.generate_stream(prompts, group_size, sampling)


@dataclass
class Shard:
    """The prompts of one `generate` call sent to one actor; `indices` are their places in the call."""

    indices: list[int]
    prompts: list[str]
    group_size: int
    sampling: SamplingConfig
    worker: int = 0
    stream: Any = None  # Ray's ObjectRefGenerator over the actor's batches of finished groups
    submitted_s: float = 0.0
    attempts: int = 0
    done: set[int] = field(default_factory=set)  # positions in `prompts` whose groups came back


@dataclass(frozen=True)
class Finished:
    """Groups that finished together, each with its prompt's index in the `generate` call."""

    groups: list[tuple[int, Group]]
    worker: int
    submitted_s: float
    finished_s: float


class _ActorPool:
    """Actors of one class, placed with a placement group on multi-node clusters, waited for at start."""

    def __init__(self, kind: str, host_class: type, factory: Callable[[], Any], config: PoolConfig) -> None:
        if not ray.is_initialized():
            init_ray()
        self.kind, self.config = kind, config
        _check_resources(kind, config)
        self.placement: PlacementGroup | None = None
        several_nodes = sum(1 for n in ray.nodes() if n["Alive"]) > 1
        options: list[dict[str, Any]] = [{} for _ in range(config.num_workers)]
        if several_nodes:
            bundle = {"CPU": config.num_cpus_per_worker} | (
                {"GPU": config.num_gpus_per_worker} if config.num_gpus_per_worker else {}
            )
            self.placement = placement_group(
                [bundle] * config.num_workers, strategy=config.placement_strategy
            )
            try:
                ray.get(self.placement.ready(), timeout=config.start_timeout_s)
            except GetTimeoutError as e:
                remove_placement_group(self.placement)
                raise WorkerStartError(
                    f"{kind} pool: no room for {config.num_workers} bundles of {bundle} with strategy "
                    f"{config.placement_strategy} within {config.start_timeout_s:.0f} s"
                ) from e
            options = [
                {
                    "scheduling_strategy": PlacementGroupSchedulingStrategy(
                        self.placement, placement_group_bundle_index=i
                    )
                }
                for i in range(config.num_workers)
            ]
        actor_class = ray.remote(host_class)
        runtime_env = {"env_vars": dict(config.env_vars)} if config.env_vars else None
        self.actors = [
            actor_class.options(
                num_cpus=config.num_cpus_per_worker,
                num_gpus=config.num_gpus_per_worker,
                max_restarts=config.max_restarts,
                max_task_retries=0,  # prompts lost with their actor are resubmitted here, and logged
                runtime_env=runtime_env,
                **options[i],
            ).remote(factory)
            for i in range(config.num_workers)
        ]
        self.nodes = self._wait_started()
        self.dead: dict[int, Any] = {}  # actor index -> a pending call that answers once it is back, or None

    def mark_dead(self, i: int) -> None:
        if i not in self.dead:
            self.dead[i] = self.actors[i].where.remote()  # Ray runs it once the restarted actor is built

    def alive(self) -> list[int]:
        """Indices of the actors that can take work now; waits only when every one is restarting."""
        while True:
            for i, ref in list(self.dead.items()):
                if ref is None or not ray.wait([ref], timeout=0)[0]:
                    continue
                try:
                    ray.get(ref)
                    del self.dead[i]
                    log.info("%s is back after a restart", self.describe(i))
                except ActorUnavailableError:  # still restarting: ask again
                    self.dead[i] = self.actors[i].where.remote()
                except RayActorError as e:
                    self.dead[i] = None
                    log.warning("%s is gone for good (%s); going on without it", self.describe(i), _cause(e))
            live = [i for i in range(len(self.actors)) if i not in self.dead]
            if live:
                return live
            if all(ref is None for ref in self.dead.values()):
                raise RuntimeError(f"every {self.kind} worker is dead and out of restarts (max_restarts)")
            time.sleep(0.5)  # every actor is restarting

    def _wait_started(self) -> list[str]:
        refs = [actor.where.remote() for actor in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.config.start_timeout_s)
        nodes = []
        for i, ref in enumerate(refs):
            if ref not in ready:
                self.shutdown()
                raise WorkerStartError(
                    f"{self.kind} worker {i} did not start within {self.config.start_timeout_s:.0f} s "
                    "(start_timeout_s); its actor log is in the Ray session folder"
                )
            try:
                nodes.append(ray.get(ref)["node_id"])
            except RayActorError as e:
                self.shutdown()
                raise WorkerStartError(f"{self.kind} worker {i} could not start: {_cause(e)}") from e
        return nodes

    def describe(self, i: int) -> str:
        return (
            f"{self.kind} worker {i} (actor {self.actors[i]._actor_id.hex()[:8]}, node {self.nodes[i][:8]})"
        )

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        if self.placement is not None:
            remove_placement_group(self.placement)
            self.placement = None


def _check_resources(kind: str, config: PoolConfig) -> None:
    """Refuse a pool the cluster can never hold at once; wait at most `resource_timeout_s` for one that
    the cluster could hold once other actors let go of their resources."""
    deadline = time.monotonic() + config.resource_timeout_s
    while True:
        total, free = ray.cluster_resources(), ray.available_resources()
        short = [
            (resource, each, each * config.num_workers)
            for resource, each in (("CPU", config.num_cpus_per_worker), ("GPU", config.num_gpus_per_worker))
            if each * config.num_workers > free.get(resource, 0)
        ]
        if not short:
            return
        resource, each, need = short[0]
        message = (
            f"{kind} pool asks for {config.num_workers} workers x {each:g} {resource} = {need:g} {resource}, "
            f"but the Ray cluster has {total.get(resource, 0):g} {resource}"
        )
        if need > total.get(resource, 0):
            raise WorkerStartError(message)
        if time.monotonic() > deadline:
            raise WorkerStartError(
                f"{message}, of which only {free.get(resource, 0):g} were free for {config.resource_timeout_s:g} s "
                "(resource_timeout_s): other actors hold the rest"
            )
        time.sleep(0.2)


def _cause(error: BaseException) -> str:
    """What killed an actor, in one line: Ray's summary and its reason, without the actor metadata."""
    lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    if not lines:
        return type(error).__name__
    if "creation task" in lines[0]:  # the constructor raised: its exception is the last line
        return lines[-1].strip()[:500]
    return " ".join(dict.fromkeys([lines[0].strip(), lines[-1].strip()]))[:500]


class RayRolloutPool:
    """`num_workers` rollout workers in Ray actors, behind the `RolloutWorker` protocol."""

    def __init__(self, make_worker: Callable[[], RolloutWorker], config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._pool = _ActorPool("rollout", _WorkerHost, make_worker, self.config)
        self.version = 0
        self._weights: list[ray.ObjectRef] | None = None
        self.resubmits = 0

    @property
    def actors(self) -> list[Any]:
        return self._pool.actors

    @property
    def nodes(self) -> list[str]:
        return self._pool.nodes

    def generate(self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig) -> list[Group]:
        return in_prompt_order(self.generate_stream(prompts, group_size, sampling), len(prompts))

    def generate_stream(
        self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Group]]]:
        for finished in self.results(self.submit(prompts, group_size, sampling)):
            yield finished.groups

    def submit(self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig) -> list[Shard]:
        """Start generating; collect with `results` (one-step-off-policy callers do a learner step between)."""
        live = self._pool.alive()
        size = max(1, math.ceil(len(prompts) / len(live)))
        return [
            self._send(Shard(list(range(start, min(start + size, len(prompts)))), list(prompts[start : start + size]),
                             group_size, sampling), live[k])
            for k, start in enumerate(range(0, len(prompts), size))
        ]  # fmt: skip

    def results(self, shards: list[Shard]) -> Iterator[Finished]:
        """Groups as they finish; the unfinished prompts of an actor that died are resubmitted and logged."""
        pending = {shard.stream: shard for shard in shards}
        while pending:
            [stream], _ = ray.wait(list(pending), num_returns=1)
            shard = pending[stream]
            try:
                batch: list[tuple[int, Group]] = ray.get(next(stream))
            except StopIteration:
                del pending[stream]
                continue
            except RayActorError as e:
                del pending[stream]
                retry = self._resubmit(shard, e)
                pending[retry.stream] = retry
                continue
            shard.done.update(i for i, _ in batch)
            groups = [(shard.indices[i], group) for i, group in batch]
            yield Finished(groups, shard.worker, shard.submitted_s, time.perf_counter())

    def _send(self, shard: Shard, worker: int) -> Shard:
        shard.worker, shard.submitted_s = worker, time.perf_counter()
        shard.stream = (
            self.actors[worker]
            .generate.options(num_returns="streaming")
            .remote(shard.prompts, shard.group_size, shard.sampling, self.version, self._weights)
        )
        return shard

    def _resubmit(self, shard: Shard, error: RayActorError) -> Shard:
        left = [k for k in range(len(shard.prompts)) if k not in shard.done]
        who = self._pool.describe(shard.worker)
        if shard.attempts >= self.config.max_resubmits:
            raise RuntimeError(
                f"{len(left)} prompts lost their rollout worker {shard.attempts + 1} times "
                f"(max_resubmits={self.config.max_resubmits}); last: {who}: {_cause(error)}"
            ) from error
        self._pool.mark_dead(shard.worker)
        live = self._pool.alive()
        target = live[shard.attempts % len(live)]
        log.warning(
            "%s died while generating; %d of its %d prompts had not come back: %s; resubmitted them to rollout "
            "worker %d (Ray restarts the dead actor up to %d times)",
            who, len(left), len(shard.prompts), _cause(error), target, self.config.max_restarts,
        )  # fmt: skip
        self.resubmits += 1
        retry = Shard([shard.indices[k] for k in left], [shard.prompts[k] for k in left], shard.group_size,
                      shard.sampling, attempts=shard.attempts + 1)  # fmt: skip
        return self._send(retry, target)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> WeightSync:
        """Put the weights in the object store once; every actor gets and loads them before returning."""
        start = time.perf_counter()
        weights = {name: t.detach().to("cpu", copy=True) for name, t in named_tensors}
        nbytes = sum(t.numel() * t.element_size() for t in weights.values())
        self.version += 1
        self._weights = [ray.put(weights)]
        # A restarting actor is not waited for: it loads these weights before its next shard.
        live = self._pool.alive()
        refs = {i: self.actors[i].load_weights.remote(self.version, self._weights) for i in live}
        for i, ref in refs.items():
            try:
                ray.get(ref)
            except RayActorError as e:
                self._pool.mark_dead(i)
                log.warning("%s died while loading weights: %s", self._pool.describe(i), _cause(e))
        return WeightSync(time.perf_counter() - start, nbytes, len(refs), self.version)

    def shutdown(self) -> None:
        self._pool.shutdown()


class _GraderHost:
    """Runs inside an actor: one grader (with its own sandbox)."""

    def __init__(self, make_grader: Callable[[], Any]) -> None:
        self.grader = make_grader()
        self.takes_lengths = "lengths" in inspect.signature(self.grader.grade).parameters

    def where(self) -> dict[str, Any]:
        return _where()

    def grade(
        self, problem: Any, completions: list[str], lengths: list[int]
    ) -> tuple[list[Any], float, float]:
        start = time.perf_counter()
        if self.takes_lengths:
            grades = self.grader.grade(problem, completions, lengths=lengths)
        else:
            grades = self.grader.grade(problem, completions)
        return grades, start, time.perf_counter()


class RayGraderPool:
    """`num_workers` graders in Ray actors; `submit` returns at once with the actor and an `ObjectRef`."""

    def __init__(self, make_grader: Callable[[], Any], config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._pool = _ActorPool("grading", _GraderHost, make_grader, self.config)
        self._next = 0

    @property
    def actors(self) -> list[Any]:
        return self._pool.actors

    @property
    def nodes(self) -> list[str]:
        return self._pool.nodes

    def submit(
        self, problem: Any, completions: list[str], lengths: list[int], avoid: int | None = None
    ) -> tuple[int, Any]:
        live = [i for i in self._pool.alive() if i != avoid] or self._pool.alive()
        worker = live[self._next % len(live)]
        self._next += 1
        return worker, self.actors[worker].grade.remote(problem, completions, lengths)

    def mark_dead(self, i: int) -> None:
        self._pool.mark_dead(i)

    def describe(self, i: int) -> str:
        return self._pool.describe(i)

    def shutdown(self) -> None:
        self._pool.shutdown()


class _ScorerHost:
    """Runs inside an actor: one reward-model scorer (anything with `score(prompts, completions)`)."""

    def __init__(self, make_scorer: Callable[[], Any]) -> None:
        self.scorer = make_scorer()

    def where(self) -> dict[str, Any]:
        return _where()

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return list(self.scorer.score(prompts, completions))


class RayScorer:
    """A reward-model scorer in its own Ray actor(s), so the model is not held by the learner's process.

    `score` shards the pairs over the actors; a call lost with a dead actor is resubmitted to another
    (or to the same one once Ray has restarted it), at most `max_resubmits` times.
    """

    def __init__(self, make_scorer: Callable[[], Any], config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig(num_workers=1)
        self._pool = _ActorPool("scoring", _ScorerHost, make_scorer, self.config)

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        live = self._pool.alive()
        size = -(-len(prompts) // len(live)) if prompts else 1
        spans = [(a, min(a + size, len(prompts))) for a in range(0, len(prompts), size)]

        def submit(n: int, worker: int) -> Any:
            a, b = spans[n]
            return self._pool.actors[worker].score.remote(list(prompts[a:b]), list(completions[a:b]))

        workers = [live[n % len(live)] for n in range(len(spans))]
        refs = [submit(n, w) for n, w in enumerate(workers)]  # all shards run at once
        scores: list[float] = []
        for n in range(len(spans)):
            attempts = 0
            while True:
                try:
                    scores += ray.get(refs[n])
                    break
                except RayActorError as e:
                    who = self._pool.describe(workers[n])
                    if attempts >= self.config.max_resubmits:
                        raise RuntimeError(
                            f"{who} died {attempts + 1} times while scoring: {_cause(e)}"
                        ) from e
                    log.warning("%s died while scoring: %s; resubmitted", who, _cause(e))
                    self._pool.mark_dead(workers[n])
                    attempts += 1
                    workers[n] = self._pool.alive()[0]
                    refs[n] = submit(n, workers[n])
        return scores

    def shutdown(self) -> None:
        self._pool.shutdown()


@dataclass
class StepTimeline:
    """When each piece of a step ran, in seconds from the step's start (for logs and `bench/rollout.py`)."""

    generation: list[tuple[float, float]] = field(default_factory=list)  # per batch: submitted, came back
    grading: list[tuple[float, float]] = field(default_factory=list)  # per group: started, finished
    total_s: float = 0.0
    regraded: int = 0  # completions graded a second time after a sandbox_error


def sample_and_grade(
    pool: RayRolloutPool,
    graders: RayGraderPool,
    problems: Sequence[Any],
    prompts: Sequence[str],
    group_size: int,
    sampling: SamplingConfig,
) -> tuple[list[Group], list[list[Any]], StepTimeline]:
    """Generate a group per prompt and grade it while the rest is still generating.

    Returns the groups and their grades in prompt order, and the step's timeline. A completion whose
    grade is a `sandbox_error` is graded once more; if it fails again it keeps that verdict, which the
    caller must leave out of the loss (its reward is not an answer's).
    """
    if len(problems) != len(prompts):
        raise ValueError(
            f"got {len(problems)} problems for {len(prompts)} prompts; give one problem per prompt"
        )
    t0 = time.perf_counter()
    timeline = StepTimeline()
    groups: list[Group | None] = [None] * len(prompts)
    grades: list[list[Any]] = [[None] * group_size for _ in prompts]
    pending: dict[Any, _GradeJob] = {}

    def send(job: _GradeJob, avoid: int | None = None) -> None:
        group = groups[job.prompt]
        assert group is not None
        texts = [group.completions[k].text for k in job.which]
        lengths = [len(group.completions[k].token_ids) for k in job.which]
        job.worker, ref = graders.submit(problems[job.prompt], texts, lengths, avoid=avoid)
        pending[ref] = job

    for finished in pool.results(pool.submit(prompts, group_size, sampling)):
        timeline.generation.append((finished.submitted_s - t0, finished.finished_s - t0))
        for i, group in finished.groups:
            groups[i] = group
            send(_GradeJob(i, list(range(len(group.completions)))))
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done)
        try:
            got, started, finished = ray.get(done)
        except RayActorError as e:
            who = graders.describe(job.worker)
            if job.attempts >= graders.config.max_resubmits:
                raise RuntimeError(
                    f"prompt {job.prompt} lost its grader {job.attempts + 1} times; last: {who}: {_cause(e)}"
                ) from e
            log.warning("%s died while grading prompt %d: %s; resubmitted", who, job.prompt, _cause(e))
            graders.mark_dead(job.worker)
            job.attempts += 1
            send(job, avoid=job.worker)
            continue
        timeline.grading.append((started - t0, finished - t0))
        for k, grade in zip(job.which, got, strict=True):
            grades[job.prompt][k] = grade
        failed = [k for k, grade in zip(job.which, got, strict=True) if grade.grader_failed]
        if failed and not job.regrade:  # once more, on another actor when there is one
            timeline.regraded += len(failed)
            send(_GradeJob(job.prompt, failed, regrade=True), avoid=job.worker)
    timeline.total_s = time.perf_counter() - t0
    return groups, grades, timeline  # type: ignore[return-value]


@dataclass
class _GradeJob:
    prompt: int
    which: list[int]  # indices of the group's completions to grade
    regrade: bool = False
    worker: int = 0
    attempts: int = 0
