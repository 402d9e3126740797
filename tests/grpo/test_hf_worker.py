"""HFWorker: groups of samples with their log-probabilities, stop strings, and weight loading."""

import torch

from grpo.hf_worker import HFWorker
from grpo.logprobs import token_logprobs
from grpo.rollout import SamplingConfig


def test_groups_tokens_and_logprobs_match_the_learners_recomputation():
    worker = HFWorker("tiny", batch_size=2)
    prompts = ["def add(a, b):\n", "def is_even(n):\n    return", "x = "]
    groups = worker.generate(prompts, 3, SamplingConfig(temperature=0.8, max_tokens=12, seed=0))
    assert [g.prompt for g in groups] == prompts and all(len(g.completions) == 3 for g in groups)
    for g in groups:
        for c in g.completions:
            assert len(c.token_ids) == len(c.logprobs) <= 12 and c.finish_reason in ("stop", "length")
            ids = torch.tensor([g.prompt_token_ids + c.token_ids])
            lp, _ = token_logprobs(
                worker.model, ids, torch.ones_like(ids), torch.tensor([len(g.prompt_token_ids)]),
                torch.tensor([len(c.token_ids)]), temperature=0.8,
            )  # fmt: skip
            torch.testing.assert_close(lp[0], torch.tensor(c.logprobs), atol=2e-4, rtol=1e-4)
    again = worker.generate(prompts, 3, SamplingConfig(temperature=0.8, max_tokens=12, seed=0))
    assert [c.token_ids for g in again for c in g.completions] == [
        c.token_ids for g in groups for c in g.completions
    ]


def test_stop_strings_end_the_text_before_them():
    worker = HFWorker("tiny")
    base = worker.generate(["def f(x):\n"], 4, SamplingConfig(temperature=1.0, max_tokens=24, seed=1))[0]
    # Stop on a character that the unconstrained samples produce, so that the stop is exercised.
    text = next(c.text for c in base.completions if len(c.text) > 3)
    stop = text[2]
    group = worker.generate(
        ["def f(x):\n"], 4, SamplingConfig(temperature=1.0, max_tokens=24, seed=1, stop=(stop,))
    )[0]
    stopped = [c for c in group.completions if c.finish_reason == "stop"]
    assert stopped and all(stop not in c.text for c in group.completions)


def test_load_weights_changes_what_it_samples():
    worker = HFWorker("tiny")
    greedy = SamplingConfig(temperature=0.0, max_tokens=8)
    before = worker.generate(["def f(x):\n"], 1, greedy)[0].completions[0].token_ids
    new = {k: torch.randn_like(v) * 0.5 for k, v in worker.model.named_parameters()}
    worker.load_weights(new.items())
    assert all(torch.equal(p, new[k]) for k, p in worker.model.named_parameters())
    after = worker.generate(["def f(x):\n"], 1, greedy)[0].completions[0].token_ids
    assert after != before


def test_shared_prefill_samples_what_generate_samples_with_a_copy_of_each_prompt():
    worker = HFWorker("tiny", batch_size=3)
    torch.manual_seed(3)  # weights that make the samples depend on the prompt
    worker.load_weights((k, torch.randn_like(v) * 0.3) for k, v in worker.model.named_parameters())
    prompts = ["def add(a, b):\n", "x = ", "def is_even(n):\n    return n % 2 == 0\n"]  # unequal: left-padded
    sampling = SamplingConfig(temperature=1.0, max_tokens=10, seed=5)
    groups = worker.generate(prompts, 4, sampling)
    enc = worker.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(5)
    with torch.no_grad():  # transformers' own way: num_return_sequences copies each prompt
        out = worker.model.generate(
            **enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=None, max_new_tokens=10,
            num_return_sequences=4, pad_token_id=worker.tokenizer.pad_token_id,
        )  # fmt: skip
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    ours = [c.token_ids for g in groups for c in g.completions]
    assert len({tuple(t) for t in ours}) > 4  # the samples differ
    assert ours == [t[: len(o)] for t, o in zip(new, ours, strict=True)]
