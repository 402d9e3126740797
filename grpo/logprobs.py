"""Per-token log-probabilities of completions, computed without ever holding `[N, T, vocab]` logits.

The model runs once over prompt + completion; its final hidden states are gathered at the positions
that predict completion tokens only (no prompt, no padding), and the output projection, the
temperature, the log-softmax and the gather run over chunks of those tokens. Each chunk is
checkpointed: backward recomputes its logits instead of keeping them, so the peak is one chunk of
`[chunk, vocab]` float32 logits, whatever the batch. TRL's `selective_log_softmax` materialises the
logits of the whole micro-batch, prompt positions excluded, padding included.

`shared_prompt_logprobs` does the same for a GRPO micro-batch whose completions share prompts: each
prompt runs once and its keys and values serve all of its completions, where TRL and verl run a
copy of the prompt with every completion.
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
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    rows, positions, slots = completion_positions(prompt_lens.cpu(), completion_lens.cpu())
    rows, positions, slots = rows.to(hidden.device), positions.to(hidden.device), slots.to(hidden.device)
    n, cmax = input_ids.shape[0], int(completion_lens.max()) if len(completion_lens) else 0
    return _head_logprobs(
        model, hidden[rows, positions], input_ids[rows, positions + 1], rows, slots, (n, cmax),
        temperature, chunk_size, with_entropy,
    )  # fmt: skip


def shared_prompt_logprobs(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_lens: torch.Tensor,
    group: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_lens: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`token_logprobs` with each distinct prompt run once, however many completions share it.

    The prompts run first, keeping their keys and values; the cache is then indexed by `group`, so
    that each completion attends to its own prompt's, and the completions run on it. Gradients flow
    through the shared prompt as they would through copies of it, so the result and its gradients
    equal `token_logprobs` on the concatenated sequences (to float rounding), at the cost of one
    prompt instead of G.

    Args:
        model: an HF causal LM whose decoder takes `past_key_values` (every `transformers` decoder).
        prompt_ids: `[P, Lp]` the distinct prompts, right-padded; `prompt_lens` `[P]`, each at least 1.
        group: `[n]` which prompt each completion continues.
        completion_ids: `[n, C]` right-padded; `completion_lens` `[n]`.

    Returns:
        `([n, C], [n, C] or None)`, zero where there is no token.
    """
    device = prompt_ids.device
    n, cmax = completion_ids.shape
    prompt_mask = (torch.arange(prompt_ids.shape[1], device=device) < prompt_lens[:, None]).long()
    completion_mask = (torch.arange(cmax, device=device) < completion_lens[:, None]).long()
    decoder = model.get_decoder()
    prompts = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True)
    cache = prompts.past_key_values
    if cache is None:  # transformers turns the cache off under gradient checkpointing in training
        raise ValueError(
            "shared prompts need the decoder's key/value cache, and the model returned none (gradient "
            "checkpointing turns it off while training): set share_prompts=False"
        )
    cache.batch_select_indices(group)  # [P, ...] -> [n, ...]: completion i sees prompt group[i]
    hidden = decoder(
        input_ids=completion_ids,
        attention_mask=torch.cat([prompt_mask[group], completion_mask], 1),
        position_ids=prompt_lens[group, None] + torch.arange(cmax, device=device),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state  # [n, C, H]
    last = prompts.last_hidden_state[torch.arange(len(prompt_lens), device=device), prompt_lens - 1]  # [P, H]
    predicting = torch.cat([last[group, None], hidden[:, :-1]], 1)  # [n, C, H]: k predicts token k
    lens = completion_lens.cpu()
    rows, _, slots = completion_positions(torch.ones_like(lens), lens)  # [M] each
    rows, slots = rows.to(device), slots.to(device)
    return _head_logprobs(
        model, predicting[rows, slots], completion_ids[rows, slots], rows, slots, (n, cmax),
        temperature, chunk_size, with_entropy,
    )  # fmt: skip


def _head_logprobs(
    model: Any,
    picked: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    slots: torch.Tensor,
    shape: tuple[int, int],
    temperature: float,
    chunk_size: int,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output projection over chunks of the `[M, H]` hidden states that predict the `[M]` targets,
    scattered back to `shape` at (rows, slots)."""
    head = model.get_output_embeddings()
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
    out = picked.new_zeros(shape, dtype=torch.float32)
    out = out.index_put((rows, slots), torch.cat(tokens) if tokens else out.new_zeros(0))
    ent_out = None
    if with_entropy:
        ent_out = picked.new_zeros(shape, dtype=torch.float32)
        ent_out = ent_out.index_put(
            (rows, slots), torch.cat(entropies) if entropies else ent_out.new_zeros(0)
        )
    return out, ent_out
