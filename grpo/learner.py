"""The GRPO learner: a policy, an optional frozen reference, AdamW with a schedule; one `step` per batch
of sampled groups.

Inside `step(batch)`:
1. advantages per group (`grpo.advantages`); with `dynamic_sampling`, groups whose rewards are all
   equal (no signal) are dropped first and the fraction is reported (refilling the batch from more
   prompts is the caller's: it samples, the learner cannot);
2. completions whose advantage is 0 are left out of the passes when that is exact (no KL term, every
   token trained): they add nothing to the loss or its gradient, and the loss keeps the whole batch's
   normalisers (`skip_zero_advantage`; in a batch where most groups have all-equal rewards, most of
   the learner's time);
3. samples are sorted by prompt length, prompt and completion length, and cut into micro-batches of
   `micro_batch_size`, each padded only to its own longest prompt and completion; with `share_prompts`
   a micro-batch runs each distinct prompt once, its keys and values shared by that prompt's
   completions (`grpo.logprobs.shared_prompt_logprobs`);
4. old log-probabilities are computed once, before the first update, when `num_iterations > 1` or
   the importance correction needs them; otherwise the ratio is exactly 1 (TRL does the same);
5. `num_iterations` optimizer updates, each accumulating the micro-batches' gradients, scaled so that
   the sum is the whole batch's loss for every `loss_type` (see `micro_batch_weight`).

Options: masking truncated completions; training only the top-entropy quantile of tokens; a truncated
importance weight min(exp(learner_old - sampler), cap) when the sampler is another engine (vLLM), as
TRL does by default, with the sampler/learner log-prob gap reported.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from grpo.advantages import group_advantages
from grpo.logprobs import shared_prompt_logprobs, token_logprobs
from grpo.loss import LOSS_TYPES, LossType, policy_loss


@dataclass(frozen=True)
class LearnerConfig:
    model: str = "tiny"
    reference: str | None = "same"  # the frozen reference for the KL term: `same` = the policy's start
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    total_steps: int | None = None  # for linear and cosine decay
    max_grad_norm: float | None = 1.0
    loss_type: LossType = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    kl_coef: float = 0.0
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    kl_ratio_weighted: bool = True  # KL term times pi/pi_old, as TRL's use_bias_correction_kl (its default)
    scale: Literal["group", "batch", "none"] = "group"
    baseline: Literal["mean", "loo"] = "mean"
    temperature: float = 1.0
    max_completion_length: int | None = None  # the dr_grpo constant; default: the batch's longest
    micro_batch_size: int = 8
    num_iterations: int = 1
    dynamic_sampling: bool = False
    mask_truncated_completions: bool = False
    top_entropy_quantile: float = 1.0
    importance_cap: float | None = None  # e.g. 2.0: correct for a different sampling engine
    logprob_chunk: int = 1024
    share_prompts: bool = True  # False: one forward pass per prompt + completion (as TRL does)
    skip_zero_advantage: bool = True  # leave advantage-0 completions out where exact (kl_coef 0, all tokens)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={self.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        if self.clip_low < 0 or self.clip_high < 0:
            raise ValueError(f"clip_low={self.clip_low} and clip_high={self.clip_high} must be >= 0")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef={self.kl_coef} must be >= 0")
        if self.kl_coef > 0 and self.reference is None:
            raise ValueError(f"kl_coef={self.kl_coef} needs a reference model, and reference is None")
        if self.micro_batch_size < 1 or self.num_iterations < 1:
            raise ValueError("micro_batch_size and num_iterations must be >= 1")
        if not 0 < self.top_entropy_quantile <= 1:
            raise ValueError(f"top_entropy_quantile={self.top_entropy_quantile} must be in (0, 1]")
        if self.schedule != "constant" and self.total_steps is None:
            raise ValueError(f"schedule={self.schedule!r} needs total_steps")


@dataclass
class RolloutBatch:
    """Groups of completions: N = num_groups * group_size samples, laid out group after group."""

    prompt_ids: list[list[int]]  # [N] the prompt of each sample (repeated within a group)
    completion_ids: list[list[int]]  # [N]
    rewards: list[float]  # [N]
    group_size: int
    sampling_logprobs: list[list[float]] | None = None  # [N] from the sampler, per completion token
    truncated: list[bool] | None = None  # [N] stopped by the length limit

    def __post_init__(self) -> None:
        n = len(self.completion_ids)
        if self.group_size < 1 or n % self.group_size:
            raise ValueError(f"group_size={self.group_size} does not divide the batch of {n} completions")
        for name in ("prompt_ids", "rewards", "sampling_logprobs", "truncated"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} completions")
        for i, p in enumerate(self.prompt_ids):
            if not p:
                raise ValueError(f"prompt {i} is empty: its first completion token has nothing to follow")
        if self.sampling_logprobs is not None:
            for i, (c, lp) in enumerate(zip(self.completion_ids, self.sampling_logprobs, strict=True)):
                if len(c) != len(lp):
                    raise ValueError(f"completion {i}: {len(c)} tokens but {len(lp)} sampling logprobs")

    def select(self, keep: list[int], group_size: int | None = None) -> RolloutBatch:
        """The samples `keep`; `group_size=1` where `keep` need not hold whole groups."""
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
        return RolloutBatch(
            [self.prompt_ids[i] for i in keep], [self.completion_ids[i] for i in keep], [self.rewards[i] for i in keep],
            group_size or self.group_size, pick(self.sampling_logprobs), pick(self.truncated),
        )  # fmt: skip


def trained_tokens(batch: RolloutBatch, mask_truncated: bool) -> list[int]:
    """`[N]` the tokens of each completion that the loss trains (none of a truncated one when masked)."""
    truncated = batch.truncated or [False] * len(batch.completion_ids)
    return [
        0 if mask_truncated and t else len(ids)
        for ids, t in zip(batch.completion_ids, truncated, strict=True)
    ]


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """`[num_groups]` True where a group's rewards are not all equal (DAPO's dynamic sampling)."""
    grouped = rewards.view(-1, group_size)
    return (grouped.max(1).values - grouped.min(1).values) > 0


def micro_batches(prompts: list[list[int]], completion_lens: list[int], size: int) -> list[list[int]]:
    """Indices sorted by prompt length, then prompt, then completion length, cut into micro-batches of
    `size`: the completions of one prompt stay together, so that it runs once for all of them, and
    padding is only within a micro-batch of similar lengths."""
    first: dict[tuple[int, ...], int] = {}
    for i, p in enumerate(prompts):
        first.setdefault(tuple(p), i)
    order = sorted(
        range(len(prompts)), key=lambda i: (len(prompts[i]), first[tuple(prompts[i])], completion_lens[i])
    )
    return [order[i : i + size] for i in range(0, len(order), size)]


def concatenated(
    prompt_ids: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_lens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[n, L]` prompt + completion per row, right-padded, and its attention mask (one prompt per row)."""
    n = completion_ids.shape[0]
    input_ids = completion_ids.new_zeros((n, int((prompt_lens + completion_lens).max())))
    attention = torch.zeros_like(input_ids)
    for r in range(n):
        p, q = int(prompt_lens[r]), int(completion_lens[r])
        input_ids[r, :p] = prompt_ids[r, :p]
        input_ids[r, p : p + q] = completion_ids[r, :q]
        attention[r, : p + q] = 1
    return input_ids, attention


def micro_batch_weight(
    loss_type: str, n_seqs: int, n_tokens: float, total_seqs: int, total_tokens: float
) -> float:
    """What a micro-batch's loss is multiplied by so that the micro-batches sum to the whole batch's loss.

    grpo and dr_grpo average over sequences (weight = share of sequences), bnpo over tokens (share of
    tokens); dapo is already divided by the whole batch's tokens (weight 1).
    """
    if loss_type in ("grpo", "dr_grpo"):
        return n_seqs / total_seqs
    if loss_type == "bnpo":
        return n_tokens / max(total_tokens, 1.0)
    return 1.0


@dataclass
class _Micro:
    idx: list[int]
    prompt_ids: torch.Tensor  # [P, Lp] the micro-batch's prompts (distinct ones with share_prompts)
    prompt_lens: torch.Tensor  # [P]
    group: torch.Tensor  # [n] which prompt each completion continues
    completion_ids: torch.Tensor  # [n, Cmax]
    completion_lens: torch.Tensor  # [n]
    mask: torch.Tensor  # [n, Cmax] trained tokens
    advantages: torch.Tensor  # [n]
    sampling: torch.Tensor | None  # [n, Cmax]
    old: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    weights: torch.Tensor | None = None


@dataclass
class Prepared:
    """A batch ready for updates: its micro-batches with old and reference log-probabilities."""

    batch: RolloutBatch
    micros: list[_Micro]
    total_tokens: float  # the loss's normalisers: trained tokens, sequences and the longest completion
    metrics: dict[str, float]  # of the whole batch, also when some completions are left out of `micros`
    skipped: bool = False
    total_seqs: int = 0
    longest: int = 0


class Learner:
    """Holds the policy, the reference (not loaded when kl_coef is 0) and the optimizer."""

    def __init__(
        self, config: LearnerConfig, *, policy: Any = None, reference: Any = None, device: str = "cpu"
    ) -> None:
        from grpo.models import load_model

        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        if policy is None:
            policy, _ = load_model(config.model, device=device)
        self.policy = policy.to(self.device)
        self.policy.train()
        self.reference = None
        if config.kl_coef > 0:
            if reference is None:
                name = config.model if config.reference == "same" else str(config.reference)
                reference, _ = load_model(name, device=device)
            self.reference = reference.to(self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(),
            lr=config.lr,
            betas=config.betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step_count = 0

    def reset_reference(self) -> None:
        """The reference becomes a copy of the current policy (iterative RL's optional reset); no-op
        without a reference (kl_coef 0)."""
        if self.reference is not None:
            self.reference.load_state_dict(self.policy.state_dict())

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        if c.schedule == "constant" or c.total_steps is None:
            return 1.0
        progress = min(1.0, (step - c.warmup_steps) / max(1, c.total_steps - c.warmup_steps))
        return 1.0 - progress if c.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    # -- one step --------------------------------------------------------------------------------------
    def step(self, batch: RolloutBatch) -> dict[str, float]:
        """`num_iterations` optimizer updates on `batch`; returns the step's metrics."""
        c = self.config
        start = time.perf_counter()
        prepared = self.prepare(batch)
        metrics = dict(prepared.metrics)
        if prepared.skipped:
            self.step_count += 1
            return metrics | {"batch/skipped": 1.0, "step": float(self.step_count)}
        sums: dict[str, float] = {}
        for _ in range(c.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            for k, v in self.accumulate(prepared).items():
                sums[k] = sums.get(k, 0.0) + v / c.num_iterations
            if not prepared.micros:  # every advantage was 0: a zero gradient, as the full passes give
                for p in self.policy.parameters():
                    if p.requires_grad:
                        p.grad = torch.zeros_like(p)
            if c.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(norm) / c.num_iterations
            self.optimizer.step()
            self.scheduler.step()
        self.step_count += 1
        seconds = time.perf_counter() - start
        metrics |= sums
        metrics |= {
            "lr": float(self.scheduler.get_last_lr()[0]),
            "perf/step_seconds": seconds,
            "perf/tokens_per_second": prepared.total_tokens * c.num_iterations / seconds,
            "step": float(self.step_count),
        }
        return metrics

    def prepare(self, batch: RolloutBatch) -> Prepared:
        """Advantages, dynamic sampling, micro-batches, and the old and reference log-probabilities."""
        c = self.config
        metrics: dict[str, float] = {}
        rewards = torch.tensor(batch.rewards, dtype=torch.float32)
        metrics["reward/mean"] = float(rewards.mean())
        metrics["reward/std"] = float(rewards.std()) if len(rewards) > 1 else 0.0
        if c.dynamic_sampling:
            keep_groups = informative_groups(rewards, batch.group_size)
            metrics["batch/dropped_group_frac"] = float(1 - keep_groups.float().mean())
            keep = [i for i in range(len(batch.rewards)) if keep_groups[i // batch.group_size]]
            if not keep:
                return Prepared(batch, [], 0.0, metrics, skipped=True)
            batch = batch.select(keep)
            rewards = torch.tensor(batch.rewards, dtype=torch.float32)
        advantages = group_advantages(rewards, batch.group_size, scale=c.scale, baseline=c.baseline)
        total_tokens = float(sum(trained_tokens(batch, c.mask_truncated_completions)))
        total_seqs, longest = len(batch.completion_ids), max(len(x) for x in batch.completion_ids)
        metrics |= {
            "batch/completions": float(total_seqs),
            "batch/trained_tokens": total_tokens,
            "batch/truncated_frac": float(np.mean(batch.truncated)) if batch.truncated else 0.0,
        }
        if c.skip_zero_advantage and c.kl_coef == 0 and c.top_entropy_quantile == 1.0:
            keep = [i for i in range(total_seqs) if advantages[i] != 0]
            metrics["batch/zero_advantage_frac"] = 1 - len(keep) / total_seqs
            batch, advantages = batch.select(keep, group_size=1), advantages[keep]
        micros = self._micro_batches(batch, advantages) if batch.completion_ids else []
        need_old = c.num_iterations > 1 or (
            c.importance_cap is not None and batch.sampling_logprobs is not None
        )
        gap = 0.0
        with torch.no_grad():
            for m in micros:
                if need_old:
                    m.old, _ = self._logprobs(self.policy, m, False)
                if self.reference is not None:
                    m.ref, _ = self._logprobs(self.reference, m, False)
                if c.importance_cap is not None and m.sampling is not None and m.old is not None:
                    m.weights = torch.clamp(torch.exp(m.old - m.sampling), max=c.importance_cap)
                    gap += float(((m.old - m.sampling).abs() * m.mask).sum())
        if c.importance_cap is not None and batch.sampling_logprobs is not None:
            metrics["sampler/logprob_gap"] = gap / max(sum(float(m.mask.sum()) for m in micros), 1.0)
        metrics["batch/padded_tokens"] = float(
            sum(m.prompt_ids.numel() + m.completion_ids.numel() for m in micros)
        )
        return Prepared(batch, micros, total_tokens, metrics, total_seqs=total_seqs, longest=longest)

    def accumulate(self, prepared: Prepared) -> dict[str, float]:
        """Backward of the whole batch's loss, one micro-batch at a time (gradients add up in `.grad`)."""
        c = self.config
        total_seqs, longest = prepared.total_seqs, prepared.longest
        sums: dict[str, float] = {"loss": 0.0}
        for m in prepared.micros:
            loss, mm = self._micro_loss(m, prepared.total_tokens, longest)
            w = micro_batch_weight(
                c.loss_type, len(m.idx), float(m.mask.sum()), total_seqs, prepared.total_tokens
            )
            (loss * w).backward()
            share = float(m.mask.sum()) / max(prepared.total_tokens, 1.0)
            for k, v in mm.items():
                if k != "loss/policy":
                    sums[k] = sums.get(k, 0.0) + v * share
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * w
        return sums

    def _micro_batches(self, batch: RolloutBatch, advantages: torch.Tensor) -> list[_Micro]:
        c = self.config
        completion_lens = [len(q) for q in batch.completion_ids]
        out = []
        for idx in micro_batches(batch.prompt_ids, completion_lens, c.micro_batch_size):
            n = len(idx)
            keys: dict[tuple[int, ...], int] = {}
            group = [
                keys.setdefault(tuple(batch.prompt_ids[i]), len(keys)) if c.share_prompts else r
                for r, i in enumerate(idx)
            ]
            prompts = [list(k) for k in keys] if c.share_prompts else [batch.prompt_ids[i] for i in idx]
            prompt_ids = torch.zeros((len(prompts), max(map(len, prompts))), dtype=torch.long)
            for r, p in enumerate(prompts):
                prompt_ids[r, : len(p)] = torch.tensor(p)
            cmax = max(max(completion_lens[i] for i in idx), 1)
            completion_ids = torch.zeros((n, cmax), dtype=torch.long)
            mask = torch.zeros((n, cmax))
            sampling = torch.zeros((n, cmax)) if batch.sampling_logprobs is not None else None
            for r, i in enumerate(idx):
                n_c = completion_lens[i]
                completion_ids[r, :n_c] = torch.tensor(batch.completion_ids[i], dtype=torch.long)
                truncated = batch.truncated is not None and batch.truncated[i]
                mask[r, :n_c] = 0.0 if (c.mask_truncated_completions and truncated) else 1.0
                if sampling is not None and batch.sampling_logprobs is not None:
                    sampling[r, :n_c] = torch.tensor(batch.sampling_logprobs[i])
            out.append(
                _Micro(
                    idx,
                    prompt_ids.to(self.device),
                    torch.tensor([len(p) for p in prompts]).to(self.device),
                    torch.tensor(group).to(self.device),
                    completion_ids.to(self.device),
                    torch.tensor([completion_lens[i] for i in idx]).to(self.device),
                    mask.to(self.device),
                    advantages[idx].to(self.device),
                    None if sampling is None else sampling.to(self.device),
                )
            )
        return out

    def _logprobs(
        self, model: Any, m: _Micro, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.config
        options = {"temperature": c.temperature, "chunk_size": c.logprob_chunk, "with_entropy": with_entropy}
        if c.share_prompts:
            return shared_prompt_logprobs(
                model, m.prompt_ids, m.prompt_lens, m.group, m.completion_ids, m.completion_lens, **options
            )
        input_ids, attention = concatenated(m.prompt_ids, m.prompt_lens, m.completion_ids, m.completion_lens)
        return token_logprobs(model, input_ids, attention, m.prompt_lens, m.completion_lens, **options)

    def _micro_loss(
        self, m: _Micro, total_tokens: float, longest: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        logprobs, entropy = self._logprobs(self.policy, m, True)
        mask = m.mask
        if c.top_entropy_quantile < 1.0 and entropy is not None:
            mask = mask * high_entropy_mask(entropy, m.mask, c.top_entropy_quantile)
        old = m.old if m.old is not None else logprobs.detach()
        return policy_loss(
            logprobs, old, m.advantages, mask, ref_logprobs=m.ref, clip_low=c.clip_low, clip_high=c.clip_high,
            kl_coef=c.kl_coef, loss_type=c.loss_type, max_completion_length=c.max_completion_length or longest,
            kl_estimator=c.kl_estimator, dual_clip=c.dual_clip, num_tokens=total_tokens,
            token_weights=m.weights, entropy=entropy, kl_ratio_weighted=c.kl_ratio_weighted,
        )  # fmt: skip

    # -- checkpoints -------------------------------------------------------------------------------------
    def save(self, path: str | Path, tokenizer: Any = None, data_position: Any = None) -> Path:
        """The policy in HF format (loadable by vLLM and `grpo.models`), plus everything a resume needs."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step_count,
                "data_position": data_position,
                "config": asdict(self.config),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "python": random.getstate(),
                    "numpy": np.random.get_state(),
                },
            },
            path / "learner_state.pt",
        )
        return path

    @classmethod
    def resume(cls, path: str | Path, config: LearnerConfig, device: str = "cpu") -> tuple[Learner, Any]:
        """A learner exactly as it was saved at `path`, and the caller's data position."""
        from grpo.models import load_model

        path = Path(path)
        state = torch.load(path / "learner_state.pt", weights_only=False)
        policy, _ = load_model(str(path), device=device)
        learner = cls(config, policy=policy, device=device)  # the reference, if any, as a fresh run loads it
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.scheduler.load_state_dict(state["scheduler"])
        learner.step_count = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        return learner, state["data_position"]


def high_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, quantile: float) -> torch.Tensor:
    """`[n, T]` 1 for the tokens whose entropy is in the top `quantile` of this micro-batch's trained
    tokens (Wang et al., "Beyond the 80/20 rule"; TRL's `top_entropy_quantile`)."""
    values = entropy[mask.bool()]
    if values.numel() == 0:
        return torch.zeros_like(mask)
    threshold = torch.quantile(values.float(), 1 - quantile)
    return (entropy >= threshold).to(mask.dtype)
