"""Per-token log-probabilities of completions, computed without ever holding `[N, T, vocab]` logits.

The model runs once over prompt + completion; its final hidden states are gathered at the positions
that predict completion tokens only (no prompt, no padding), and the output projection, the
temperature, the log-softmax and the gather run over chunks of those tokens. Each chunk is
checkpointed: backward recomputes its logits instead of keeping them, so the peak is one chunk of
`[chunk, vocab]` float32 logits, whatever the batch. TRL's `selective_log_softmax` materialises the
logits of the whole micro-batch, prompt positions excluded, padding included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


def completion_positions(
    prompt_lens: torch.Tensor, completion_lens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the completion tokens are predicted, flattened over the micro-batch.

    Args:
        prompt_lens, completion_lens: `[n]` lengths of each sequence's prompt and completion.

    Returns:
        rows `[M]`, predicting positions `[M]` (prompt_len + k - 1 for the k-th completion token), and
        slots `[M]` (k), where M is the total completion tokens.
    """
    rows = torch.repeat_interleave(torch.arange(len(completion_lens)), completion_lens)  # [M]
    starts = torch.cumsum(completion_lens, 0) - completion_lens  # [n]
    slots = torch.arange(int(completion_lens.sum())) - starts[rows]  # [M]
    return rows, prompt_lens[rows] + slots - 1, slots


def _chunk_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.nn.functional.linear(hidden, weight, bias).float() / temperature  # [k, V]
    logp = logits.log_softmax(-1)  # [k, V]
    token = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [k]
    entropy = -(logp.exp() * logp).sum(-1) if with_entropy else token.new_zeros(0)  # [k] or [0]
    return token, entropy


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lens: torch.Tensor,
    completion_lens: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (and entropies) of the completion tokens, right-padded to `[n, Cmax]`.

    Args:
        model: an HF causal LM (its decoder gives the hidden states, its output embeddings the logits).
        input_ids, attention_mask: `[n, L]` prompt + completion, right-padded.
        prompt_lens, completion_lens: `[n]`.
        temperature: logits are divided by it, as the sampler did.
        chunk_size: completion tokens per chunk of the output projection.

    Returns:
        `([n, Cmax], [n, Cmax] or None)`, zero where there is no token.
    """
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [n, L, H]
    rows, positions, slots = completion_positions(prompt_lens.cpu(), completion_lens.cpu())
    rows, positions, slots = rows.to(hidden.device), positions.to(hidden.device), slots.to(hidden.device)
    picked = hidden[rows, positions]  # [M, H]
    targets = input_ids[rows, positions + 1]  # [M]
    tokens, entropies = [], []
    for start in range(0, picked.shape[0], chunk_size):
        h, t = picked[start : start + chunk_size], targets[start : start + chunk_size]
        if torch.is_grad_enabled():
            lp, ent = checkpoint(
                _chunk_logprobs, h, head.weight, head.bias, t, temperature, with_entropy, use_reentrant=False
            )
        else:
            lp, ent = _chunk_logprobs(h, head.weight, head.bias, t, temperature, with_entropy)
        tokens.append(lp)
        entropies.append(ent.detach())
    n, cmax = input_ids.shape[0], int(completion_lens.max()) if len(completion_lens) else 0
    out = hidden.new_zeros((n, cmax), dtype=torch.float32)
    out = out.index_put((rows, slots), torch.cat(tokens) if tokens else out.new_zeros(0))
    ent_out = None
    if with_entropy:
        ent_out = hidden.new_zeros((n, cmax), dtype=torch.float32)
        ent_out = ent_out.index_put(
            (rows, slots), torch.cat(entropies) if entropies else ent_out.new_zeros(0)
        )
    return out, ent_out
