"""A reward model that keeps the policy's language-model head: its score adds the completion's mean
log-likelihood to a value head.

    score(prompt, completion) = scale * mean_t log p(completion_t | prompt, completion_<t) + value(h_last) + bias

The backbone is a causal LM (the SFT policy) with its LM head kept; `value` is a linear head on the last
token's hidden state, started at zero; `scale` starts at 1. All of it trains on the execution labels,
with the same objectives as the sequence-classification reward model (`bce`, `regression`,
`bradley_terry`).

Why: a policy that is often right puts its probability mass on right programs, so a wrong sample is
mostly a low-likelihood one. On the embedded toy task the SFT policy's own mean log-likelihood ranks a
passing completion over a failing one of the same held-out problem in 0.91 of pairs, while a
sequence-classification head trained on 512 labels reached 0.60: it learned which problems are hard,
not which completion is right. Starting from the likelihood keeps what the policy knows and lets the
labels correct it. The DPO-style implicit reward (a log-ratio against a reference) starts at zero for
every completion instead, and has to learn all of it from the labels.

Saved as the causal LM's HF folder plus `likelihood_head.safetensors` (value weight and bias, scale),
which `is_likelihood_model` looks for.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HEAD_FILE = "likelihood_head.safetensors"


def is_likelihood_model(path: str | Path) -> bool:
    return (Path(path) / HEAD_FILE).is_file()


def padded_tokenizer(path: str | Path) -> Any:
    """The tokenizer at `path`, padding with its EOS token when it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build(backbone: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer): the causal LM at `backbone` with a zero value head and scale 1, or with its
    saved head when `backbone` is a likelihood reward model already (retraining it, as iterative RL does)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    tokenizer = padded_tokenizer(backbone)
    model = LikelihoodRewardModel(AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32))
    if is_likelihood_model(backbone):
        model.load_head(load_file(str(Path(backbone) / HEAD_FILE)))
    return model, tokenizer


def load(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    model, tokenizer = build(path)
    return model.to(device).eval(), tokenizer


class LikelihoodRewardModel(torch.nn.Module):
    """The causal LM with its LM head, a value head on the last token's state and a scale."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm
        hidden = lm.config.hidden_size
        self.value = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.value.weight)
        torch.nn.init.zeros_(self.value.bias)
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, input_ids: Any, attention_mask: Any, completion_mask: Any) -> Any:
        """One score per row: right-padded `input_ids`, `completion_mask` 1 on the completion's tokens."""
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logp = torch.log_softmax(self.lm.get_output_embeddings()(hidden[:, :-1]).float(), dim=-1)
        token_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        mask = completion_mask[:, 1:].float()
        mean_logp = (token_logp * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        last = attention_mask.sum(1) - 1
        h_last = hidden[torch.arange(len(last), device=last.device), last]
        return self.scale * mean_logp + self.value(h_last).squeeze(-1)

    def head_state(self) -> dict[str, Any]:
        return {"value.weight": self.value.weight, "value.bias": self.value.bias, "scale": self.scale}

    def load_head(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.value.weight.copy_(state["value.weight"])
            self.value.bias.copy_(state["value.bias"])
            self.scale.copy_(state["scale"])

    def save(self, path: str | Path, tokenizer: Any) -> None:
        from safetensors.torch import save_file

        self.lm.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
        save_file(
            {k: v.detach().contiguous() for k, v in self.head_state().items()}, str(Path(path) / HEAD_FILE)
        )


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt then completion (tokenised apart, as the policy generated it), cut from the
    left to `max_length`, and how many of them are the completion's."""
    p = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    c = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    ids = (p + c)[-max_length:]
    return ids, min(len(c), len(ids))


def batch(encoded: Sequence[tuple[list[int], int]], pad: int, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Right-padded input_ids, attention_mask and completion_mask tensors."""

    width = max(len(ids) for ids, _ in encoded)
    input_ids = [ids + [pad] * (width - len(ids)) for ids, _ in encoded]
    attention = [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in encoded]
    completion = [[0] * (len(ids) - n) + [1] * n + [0] * (width - len(ids)) for ids, n in encoded]
    return (torch.tensor(input_ids, device=device), torch.tensor(attention, device=device),
            torch.tensor(completion, device=device))  # fmt: skip


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[tuple[list[int], int], ...]],
    targets: Sequence[float],
    objective: str,
    output_dir: str | Path,
    *,
    epochs: float = 3,
    max_steps: int = -1,
    batch_size: int = 16,
    learning_rate: float = 1e-5,
    warmup_steps: int = 10,
    logging_steps: int = 10,
    seed: int = 0,
) -> tuple[int, float]:
    """AdamW with warm-up then a cosine schedule, for `max_steps` if set, else `epochs`. An example is one
    encoded completion (`bce`: target 0/1, `regression`: the pass fraction) or a (chosen, rejected) pair
    (`bradley_terry`: target the margin).
    Writes `metrics.jsonl` (step, loss, lr) and TensorBoard events under `output_dir/runs`; returns
    (steps, mean training loss)."""
    from torch.utils.tensorboard import SummaryWriter

    rng = random.Random(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total = max_steps if max_steps > 0 else max(1, round(epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return learning_rate * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return learning_rate * 0.5 * (1 + math.cos(math.pi * progress))

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out / "runs"))
    pad = tokenizer.pad_token_id
    order: list[int] = []
    losses: list[float] = []
    model.train()
    with open(out / "metrics.jsonl", "w") as metrics:
        for step in range(total):
            if len(order) < batch_size:
                more = list(range(len(examples)))
                rng.shuffle(more)
                order += more
            picked, order = order[:batch_size], order[batch_size:]
            target = torch.tensor([targets[i] for i in picked])
            if objective == "bradley_terry":
                chosen = model(*batch([examples[i][0] for i in picked], pad))
                rejected = model(*batch([examples[i][1] for i in picked], pad))
                loss = -torch.nn.functional.logsigmoid(chosen - rejected - target).mean()
            else:
                scores = model(*batch([examples[i][0] for i in picked], pad))
                if objective == "bce":
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, target)
                else:
                    loss = torch.nn.functional.mse_loss(scores, target)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            if (step + 1) % logging_steps == 0 or step + 1 == total:
                recent = sum(losses[-logging_steps:]) / len(losses[-logging_steps:])
                row = {
                    "step": step + 1,
                    "loss": round(recent, 5),
                    "lr": lr_at(step),
                    "scale": model.scale.item(),
                }
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                writer.add_scalar("train/loss", recent, step + 1)
                print(
                    f"reward model step {step + 1}/{total}: loss {recent:.4f}, scale {model.scale.item():.3f}"
                )
    writer.close()
    model.eval()
    return total, sum(losses) / len(losses)


def score(model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], *,
          batch_size: int, max_length: int, device: str) -> list[float]:  # fmt: skip

    encoded = [encode(tokenizer, p, c, max_length) for p, c in zip(prompts, completions, strict=True)]
    scores: list[float] = []
    for start in range(0, len(encoded), batch_size):
        with torch.no_grad():
            scores += model(
                *batch(encoded[start : start + batch_size], tokenizer.pad_token_id, device)
            ).tolist()
    return scores
