"""The clipped policy loss of GRPO and its variants, as one pure tensor function.

`loss_type` means what it means in TRL's GRPOTrainer:
- `grpo`: token losses averaged within each completion, then over completions (DeepSeekMath);
- `bnpo`: token losses averaged over all completion tokens of the (micro-)batch;
- `dr_grpo`: summed token losses divided by N * max_completion_length (Dr. GRPO, a constant);
- `dapo`: summed token losses divided by the completion tokens of the whole generation batch
  (`num_tokens`, so that micro-batches add up to the full batch's loss).
The KL term to the reference is added per token before the reduction, as in TRL and DeepSeekMath.
"""

from __future__ import annotations

from typing import Literal

import torch

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
KLEstimator = Literal["k1", "k2", "k3"]
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k3"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens (Schulman's k1, k2, k3).

    Shapes: `[N, T]` in, `[N, T]` out. k3 = exp(ref - logp) - (ref - logp) - 1 is unbiased and >= 0.
    """
    log_ratio = ref_logprobs - logprobs  # [N, T]
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(f"unknown kl_estimator {estimator!r}: expected 'k1', 'k2' or 'k3'")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logprobs: torch.Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    kl_coef: float = 0.0,
    loss_type: LossType = "grpo",
    max_completion_length: int | None = None,
    kl_estimator: KLEstimator = "k3",
    dual_clip: float | None = None,
    num_tokens: float | None = None,
    token_weights: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    kl_ratio_weighted: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with an optional KL penalty.

    Args:
        logprobs: `[N, T]` log-probabilities of the completion tokens under the policy (with grad).
        old_logprobs: `[N, T]` the same under the policy that sampled them (no grad).
        advantages: `[N]` one advantage per completion.
        mask: `[N, T]` 1 for completion tokens that are trained, 0 for padding.
        ref_logprobs: `[N, T]` under the frozen reference; needed when `kl_coef > 0`.
        clip_low, clip_high: the ratio is clipped to `[1 - clip_low, 1 + clip_high]` (DAPO clip-higher).
        dual_clip: for negative advantages, bound the loss by `-A * dual_clip` (dual-clip PPO, c > 1).
        max_completion_length: the `dr_grpo` constant; defaults to T.
        num_tokens: the `dapo` normaliser, trained tokens in the whole batch; defaults to `mask.sum()`.
        token_weights: `[N, T]` multiplies the policy term, e.g. a truncated importance weight
            between the learner and a sampler from another engine.
        entropy: `[N, T]` per-token entropy, only reported.
        kl_ratio_weighted: multiply the KL term by the ratio pi/pi_old, which makes it an unbiased
            estimate when the tokens were sampled by pi_old (TRL's `use_bias_correction_kl`).

    Returns:
        `(loss, metrics)`; metrics are floats keyed `loss/...`.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}: expected one of {', '.join(LOSS_TYPES)}")
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low and clip_high must be >= 0, got {clip_low} and {clip_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if kl_coef != 0 and ref_logprobs is None:
        raise ValueError("kl_coef != 0 needs ref_logprobs")
    mask = mask.to(logprobs.dtype)  # [N, T]
    adv = advantages.to(logprobs.dtype).unsqueeze(1)  # [N, 1]

    ratio = torch.exp(logprobs - old_logprobs)  # [N, T]
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)  # [N, T]
    token_loss = -torch.min(ratio * adv, clipped * adv)  # [N, T]
    if dual_clip is not None:
        token_loss = torch.where(adv < 0, torch.min(token_loss, -adv * dual_clip), token_loss)
    if token_weights is not None:
        token_loss = token_loss * token_weights
    kl = None
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, kl_estimator)  # [N, T]
        if kl_coef != 0:
            token_loss = token_loss + kl_coef * (kl * ratio if kl_ratio_weighted else kl)

    loss = reduce_token_loss(token_loss, mask, loss_type, max_completion_length, num_tokens)

    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1)
        low = ((ratio < 1 - clip_low) & (adv < 0)).to(mask.dtype)
        high = ((ratio > 1 + clip_high) & (adv > 0)).to(mask.dtype)
        masked_ratio = torch.where(mask.bool(), ratio, torch.zeros_like(ratio))
        metrics = {
            "loss/policy": float(loss),
            "loss/clip_frac_low": float((low * mask).sum() / n_tok),
            "loss/clip_frac_high": float((high * mask).sum() / n_tok),
            "loss/clip_frac": float(((low + high) * mask).sum() / n_tok),
            "loss/ratio_mean": float((ratio * mask).sum() / n_tok),
            "loss/ratio_max": float(masked_ratio.max()) if mask.any() else 1.0,
        }
        if kl is not None:
            metrics["loss/kl"] = float((kl * mask).sum() / n_tok)
        if entropy is not None:
            metrics["loss/entropy"] = float((entropy * mask).sum() / n_tok)
    return loss, metrics


def reduce_token_loss(
    token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: LossType,
    max_completion_length: int | None = None,
    num_tokens: float | None = None,
) -> torch.Tensor:
    """Reduce `[N, T]` token losses to a scalar the way `loss_type` says (see the module docstring)."""
    masked = token_loss * mask  # [N, T]
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return masked.sum() / (token_loss.shape[0] * (max_completion_length or token_loss.shape[1]))
    if loss_type == "dapo":
        return masked.sum() / (num_tokens if num_tokens is not None else mask.sum().clamp(min=1))
    raise ValueError(f"unknown loss_type {loss_type!r}: expected one of {', '.join(LOSS_TYPES)}")
