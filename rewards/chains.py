"""The embedded default's problems: `f(x)` described in words as a chain of 1-3 integer primitives.

    Add 3 to x, then square the result, then take the minimum of the result and 5.

Each problem has a reference solution (one line per step, so a small model can learn the mapping from
phrase to line), public tests (the reward) and hidden tests (evaluation).

The space of chains is split three ways, by the chain alone, so the splits never change with the seed
or the number of problems drawn:
- `heldout`: chains with an adjacent pair of primitive kinds from `HELDOUT_PAIRS`. Training never
  shows these compositions, so held-out pass@1 measures generalisation, not recall.
- `validation`: a tenth of the other chains, picked by a stable hash of the chain.
- `train`: the rest.

Rows are in the call format of DESIGN.md §3.1 (`tests` public, `hidden_tests` hidden). With
`fmt="humaneval"` they are in HumanEval format instead: `test` holds a `check(candidate)` with the
hidden tests.

    python -m rewards.chains --split train --n 500 --seed 0 --out train.jsonl
    python -m rewards.chains --split heldout --n 500 --explain runs/eval/results.jsonl   # why they failed
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "validation", "heldout")
FORMATS = ("call", "humaneval")
ENTRY_POINT = "f"
CONSTANTS = range(2, 10)
LENGTH_WEIGHTS = (1.0, 2.0, 2.0)  # relative odds of a chain of 1, 2 and 3 steps
TEST_INPUTS = range(-30, 31)


@dataclass(frozen=True)
class Primitive:
    kind: str
    phrase: str  # how the step reads; {k} is the constant, {what} is "x" or "the result"
    code: str  # one line: x = ...
    apply: Callable[[int, int], int]
    takes_k: bool = True


PRIMITIVES = {
    p.kind: p
    for p in (
        Primitive("add", "add {k} to {what}", "x = x + {k}", lambda x, k: x + k),
        Primitive("sub", "subtract {k} from {what}", "x = x - {k}", lambda x, k: x - k),
        Primitive("mul", "multiply {what} by {k}", "x = x * {k}", lambda x, k: x * k),
        Primitive("floordiv", "floor-divide {what} by {k}", "x = x // {k}", lambda x, k: x // k),
        Primitive("mod", "take {what} modulo {k}", "x = x % {k}", lambda x, k: x % k),
        Primitive("square", "square {what}", "x = x * x", lambda x, k: x * x, takes_k=False),
        Primitive("negate", "negate {what}", "x = -x", lambda x, k: -x, takes_k=False),
        Primitive(
            "abs", "take the absolute value of {what}", "x = abs(x)", lambda x, k: abs(x), takes_k=False
        ),
        Primitive("max", "take the maximum of {what} and {k}", "x = max(x, {k})", lambda x, k: max(x, k)),
        Primitive("min", "take the minimum of {what} and {k}", "x = min(x, {k})", lambda x, k: min(x, k)),
    )
}
KINDS = tuple(PRIMITIVES)


def _stable_bucket(text: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % buckets


# A fifth of the ordered pairs of distinct kinds, fixed by a hash so the held-out set never moves.
HELDOUT_PAIRS = frozenset(
    (a, b) for a in KINDS for b in KINDS if a != b and _stable_bucket(f"pair:{a}>{b}", 5) == 0
)

Step = tuple[str, int]  # (kind, constant; 0 for kinds without one)


def pair_in_share(pair: tuple[str, str], share: float) -> bool:
    """Whether an ordered pair of kinds is in the first `share` of all pairs, in a fixed hashed order (the
    pairs in a share of 0.3 are also in every larger share)."""
    return _stable_bucket(f"share:{pair[0]}>{pair[1]}", 10_000) < share * 10_000


def split_of(chain: tuple[Step, ...]) -> str:
    """Which split a chain belongs to; a pure function of the chain."""
    kinds = [kind for kind, _ in chain]
    if any(pair in HELDOUT_PAIRS for pair in itertools.pairwise(kinds)):
        return "heldout"
    return "validation" if _stable_bucket(f"chain:{chain}", 10) == 0 else "train"


def describe(chain: tuple[Step, ...]) -> str:
    parts = []
    for i, (kind, k) in enumerate(chain):
        phrase = PRIMITIVES[kind].phrase.format(k=k, what="x" if i == 0 else "the result")
        parts.append(phrase if i == 0 else "then " + phrase)
    text = ", ".join(parts)
    return text[0].upper() + text[1:] + ". Return the result."


def evaluate(chain: tuple[Step, ...], x: int) -> int:
    for kind, k in chain:
        x = PRIMITIVES[kind].apply(x, k)
    return x


def solution(chain: tuple[Step, ...]) -> str:
    """The reference body, in HumanEval completion mode (it continues the prompt)."""
    lines = [PRIMITIVES[kind].code.format(k=k) for kind, k in chain]
    return "".join(f"    {line}\n" for line in [*lines, "return x"])


def prompt(chain: tuple[Step, ...], example: int) -> str:
    return (
        f"def {ENTRY_POINT}(x: int) -> int:\n"
        f'    """{describe(chain)}\n'
        f"    >>> {ENTRY_POINT}({example})\n"
        f"    {evaluate(chain, example)}\n"
        f'    """\n'
    )


def _random_chain(
    rng: random.Random,
    length_weights: Sequence[float] = LENGTH_WEIGHTS,
    constants: Sequence[int] = CONSTANTS,
) -> tuple[Step, ...]:
    length = rng.choices((1, 2, 3), weights=length_weights)[0]
    chain: list[Step] = []
    while len(chain) < length:
        kind = rng.choice(KINDS)
        if chain and chain[-1][0] == kind:
            continue
        chain.append((kind, rng.choice(constants) if PRIMITIVES[kind].takes_k else 0))
    return tuple(chain)


def problem_row(
    chain: tuple[Step, ...],
    task_id: str,
    rng: random.Random,
    *,
    fmt: str = "call",
    public: int = 3,
    hidden: int = 10,
) -> dict[str, Any]:
    inputs = rng.sample(TEST_INPUTS, public + hidden + 1)
    example, public_in, hidden_in = inputs[0], inputs[1 : 1 + public], inputs[1 + public :]
    row: dict[str, Any] = {
        "task_id": task_id,
        "prompt": prompt(chain, example),
        "entry_point": ENTRY_POINT,
        "canonical_solution": solution(chain),
    }
    if fmt == "humaneval":
        asserts = "".join(
            f"    assert candidate({x}) == {evaluate(chain, x)}\n" for x in public_in + hidden_in
        )
        row["test"] = f"def check(candidate):\n{asserts}"
    else:
        row["tests"] = [{"args": [x], "expected": evaluate(chain, x)} for x in public_in]
        row["hidden_tests"] = [{"args": [x], "expected": evaluate(chain, x)} for x in hidden_in]
    return row


def generate(
    split: str,
    n: int,
    seed: int = 0,
    *,
    fmt: str = "call",
    public: int = 3,
    hidden: int = 10,
    length_weights: Sequence[float] = LENGTH_WEIGHTS,
    constants: Sequence[int] = CONSTANTS,
    pair_share: float = 1.0,
) -> list[dict[str, Any]]:
    """`n` distinct problems of `split`, the same for the same arguments.

    `length_weights` are the relative odds of drawing a chain of 1, 2 and 3 steps; `constants` are the
    values a step's constant is drawn from (the default 2-9). With `pair_share` < 1, only chains whose
    adjacent pairs of kinds are all in that share of the pairs (`pair_in_share`) are drawn: labelled data
    that shows fewer compositions than the unlabelled prompts do.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if n < 0 or public < 0 or hidden < 1:
        raise ValueError(
            f"need n >= 0, public >= 0 and hidden >= 1 (got n={n}, public={public}, hidden={hidden})"
        )
    weights = [float(w) for w in length_weights]
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            "length_weights must be 3 odds, for chains of 1, 2 and 3 steps, none negative and not all 0 "
            f"(got {weights})"
        )
    ks = list(constants)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in ks):
        raise ValueError(f"constants must be a non-empty list of integers >= 2 (got {ks})")
    if not 0 < pair_share <= 1:
        raise ValueError(f"pair_share must be in (0, 1] (got {pair_share})")
    rng = random.Random(f"chains:{split}:{seed}")
    seen: set[tuple[Step, ...]] = set()
    rows: list[dict[str, Any]] = []
    for _ in range(200 * n + 1000):
        if len(rows) == n:
            break
        chain = _random_chain(rng, weights, ks)
        if chain in seen or split_of(chain) != split:
            continue
        if pair_share < 1 and not all(
            pair_in_share(pair, pair_share) for pair in itertools.pairwise(k for k, _ in chain)
        ):
            continue
        seen.add(chain)
        rows.append(
            problem_row(
                chain, f"chains/{split}/{seed}/{len(rows)}", rng, fmt=fmt, public=public, hidden=hidden
            )
        )
    if len(rows) < n:
        raise ValueError(f"could only draw {len(rows)} distinct {split} chains of the {n} asked for")
    return rows


def sft_rows(split: str = "train", n: int = 500, seed: int = 0, **options: Any) -> list[dict[str, str]]:
    """Labelled examples for SFT: the problem's prompt and its reference solution. `options` go to
    `generate` (`length_weights`, `constants`, `pair_share`)."""
    rows = generate(split, n, seed, **options)
    return [{"prompt": r["prompt"], "response": r["canonical_solution"]} for r in rows]


def code_documents(split: str = "train", n: int = 500, seed: int = 0) -> list[dict[str, str]]:
    """Whole programs (prompt + solution) as code documents, for fill-in-the-middle training."""
    return [{"text": r["prompt"] + r["canonical_solution"]} for r in generate(split, n, seed)]


# -- why a completion fails ----------------------------------------------------------------------------
DIAGNOSES = ("as_reference", "wrong_constant", "wrong_operation", "missing_step", "extra_step")


def _steps(body: str) -> list[str]:
    """The `x = ...` lines of a solution body, stripped (blank lines and `return x` left out)."""
    return [s for line in body.splitlines() if (s := line.strip()) and s != "return x"]


def _kind(line: str) -> str:
    """The primitive a line computes, or "?" for a line that is none of them."""
    for kind, p in PRIMITIVES.items():
        if re.fullmatch(re.escape(p.code).replace(r"\{k\}", r"-?\d+"), line):
            return kind
    return "?"


def diagnose(row: dict[str, Any], completion: str) -> str:
    """How a completion (a function body) differs from a problem's reference solution, line by line:
    one of `DIAGNOSES`. `wrong_constant` has the right operations in the right order."""
    got, ref = _steps(completion), _steps(row["canonical_solution"])
    if got == ref:
        return "as_reference"
    if len(got) < len(ref):
        return "missing_step"
    if len(got) > len(ref):
        return "extra_step"
    return "wrong_constant" if [_kind(x) for x in got] == [_kind(x) for x in ref] else "wrong_operation"


def heldout_pairs(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The held-out pairs of primitives (adjacent steps) in a problem's reference solution."""
    kinds = [_kind(line) for line in _steps(row["canonical_solution"])]
    return [pair for pair in itertools.pairwise(kinds) if pair in HELDOUT_PAIRS]


def explain(results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """A report on the failures in `recipes.eval`'s results.jsonl (first sample of each problem): how
    many of each diagnosis, and the held-out pairs that fail most."""
    by_id = {r["task_id"]: r for r in rows}
    kinds: dict[str, int] = dict.fromkeys(DIAGNOSES, 0)
    pair_total: dict[tuple[str, str], int] = {}
    pair_failed: dict[tuple[str, str], int] = {}
    failed = 0
    for result in results:
        if result["task_id"] not in by_id:
            raise ValueError(
                f"{result['task_id']!r} is not one of the chain problems given (split, n, seed?)"
            )
        row = by_id[result["task_id"]]
        ok = bool(result["passed"])
        for pair in heldout_pairs(row):
            pair_total[pair] = pair_total.get(pair, 0) + 1
            pair_failed[pair] = pair_failed.get(pair, 0) + (not ok)
        if not ok:
            failed += 1
            kinds[diagnose(row, result["completion"])] += 1
    lines = [f"{failed} of {len(results)} failed: " + ", ".join(f"{k} {v}" for k, v in kinds.items() if v)]
    worst = sorted(pair_total, key=lambda p: (-pair_failed[p] / pair_total[p], p))[:8]
    if worst:
        lines.append("held-out pairs failing most (failed/problems): " + ", ".join(
            f"{a}>{b} {pair_failed[(a, b)]}/{pair_total[(a, b)]}" for a, b in worst))  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write chain problems as JSONL, or explain an evaluation's failures."
    )
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=FORMATS, default="call")
    parser.add_argument("--out", help="JSONL file; stdout when absent")
    parser.add_argument(
        "--explain", metavar="RESULTS", help="recipes.eval's results.jsonl on these problems: why they failed"
    )
    args = parser.parse_args(argv)
    rows = generate(args.split, args.n, args.seed, fmt=args.format)
    if args.explain:
        with open(args.explain) as f:
            results = [json.loads(line) for line in f if line.strip()]
        print("\n".join(explain(results, rows)))
        return
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
