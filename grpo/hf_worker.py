"""`HFWorker`: group sampling with `transformers.generate`, batched, with a KV cache.

It serves where vLLM is not installed, and as a reference for the vLLM worker in tests. Each prompt is
sampled `group_size` times in one batched `generate` call (prompts left-padded, each prompt's keys and
values computed once for its group); every completion comes
back with its token ids, text, the log-probability of each sampled token under the
temperature-scaled distribution (what the learner recomputes), and why it stopped. A completion that
hits a stop string stops there: its text ends before the stop string, as vLLM's does, and its token ids
end with the token that completed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from grpo.models import load_model
from grpo.rollout import Completion, Group, SamplingConfig


class HFWorker:
    """A `RolloutWorker` on an HF causal LM; `batch_size` prompts are sampled per `generate` call."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 8, dtype: Any = None) -> None:
        self.model, self.tokenizer = load_model(model, device=device, dtype=dtype)
        self.model.eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig) -> list[Group]:
        return [group for batch in self.generate_stream(prompts, group_size, sampling) for _, group in batch]

    @torch.no_grad()
    def generate_stream(
        self, prompts: Sequence[str], group_size: int, sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Group]]]:
        """Each batch of `batch_size` prompts' groups, with their prompt's index, as soon as it is done."""
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for start in range(0, len(prompts), self.batch_size):
            groups = self._generate(list(prompts[start : start + self.batch_size]), group_size, sampling)
            yield list(enumerate(groups, start))

    def _generate(self, prompts: list[str], group_size: int, sampling: SamplingConfig) -> list[Group]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        greedy = sampling.temperature == 0
        inputs, repeats = self._shared_prefill(enc["input_ids"], enc["attention_mask"], group_size)
        out = self.model.generate(
            **inputs,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy or sampling.top_k <= 0 else sampling.top_k,
            max_new_tokens=sampling.max_tokens,
            num_return_sequences=repeats,
            stop_strings=list(sampling.stop) or None,
            tokenizer=self.tokenizer if sampling.stop else None,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        width = enc["input_ids"].shape[1]
        new = out.sequences[:, width:]  # [B * G, steps]
        logits = torch.stack(out.logits, 1).float()  # [B * G, steps, V]
        scale = 1.0 if greedy else sampling.temperature
        logprobs = (
            (logits / scale).log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        )  # [B * G, steps]
        groups = []
        for b, prompt in enumerate(prompts):
            prompt_ids = enc["input_ids"][b][enc["attention_mask"][b].bool()].tolist()
            completions = [
                self._completion(new[r].tolist(), logprobs[r].tolist(), sampling)
                for r in range(b * group_size, (b + 1) * group_size)
            ]
            groups.append(Group(prompt=prompt, prompt_token_ids=prompt_ids, completions=completions))
        return groups

    def _shared_prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, group_size: int
    ) -> tuple[dict[str, Any], int]:
        """`generate`'s inputs with each prompt's keys and values computed once for its whole group.

        All but the last prompt token run here, at the positions `generate` gives them, and the cache is
        repeated `group_size` times; `generate` then runs the last token and samples. Without this,
        `num_return_sequences` runs every prompt `group_size` times. Returns the inputs and the
        `num_return_sequences` left to ask for."""
        if group_size == 1 or input_ids.shape[1] < 2:
            return {"input_ids": input_ids, "attention_mask": attention_mask}, group_size
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        cache = self.model(
            input_ids=input_ids[:, :-1],
            attention_mask=attention_mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
        ).past_key_values
        cache.batch_repeat_interleave(group_size)
        inputs = {
            "input_ids": input_ids.repeat_interleave(group_size, 0),
            "attention_mask": attention_mask.repeat_interleave(group_size, 0),
            "past_key_values": cache,
        }
        return inputs, 1

    def _completion(self, ids: list[int], logprobs: list[float], sampling: SamplingConfig) -> Completion:
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        n, reason = len(ids), "length"
        for i, t in enumerate(ids):
            if t in eos_ids:
                n, reason = i + 1, "stop"
                break
        text = self.tokenizer.decode(ids[: n - 1] if reason == "stop" else ids[:n], skip_special_tokens=True)
        if sampling.stop and _first_stop(text, sampling.stop) is not None:
            for k in range(1, n + 1):  # the first prefix whose text holds a stop string ends the completion
                prefix = self.tokenizer.decode(ids[:k], skip_special_tokens=True)
                cut = _first_stop(prefix, sampling.stop)
                if cut is not None:
                    n, reason, text = k, "stop", prefix[:cut]
                    break
        return Completion(text=text, token_ids=ids[:n], logprobs=logprobs[:n], finish_reason=reason)  # type: ignore[arg-type]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy new weights in place (after a learner step)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in params:
                    raise KeyError(f"the rollout model has no parameter {name!r}")
                params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
