"""How accurate a reward model is against hidden tests.

Input: completions of held-out problems, each with the reward model's score, whether it passed the
problem's hidden tests (the truth), and optionally whether it passed the public tests alone (what a
sparse execution reward would have said). Output (`rm_report`):

- pairwise accuracy: over every (passing, failing) pair of completions of the same problem, how often
  the passing one scores higher (ties count one half). Problems without such a pair are skipped and
  counted;
- ROC-AUC over all completions (the same statistic pooled across problems);
- calibration: reliability bins of sigmoid(score) against the pass rate, and the expected calibration
  error. Meaningful for pointwise (BCE) models; a Bradley-Terry score has no absolute scale;
- best-of-n: the hidden pass rate when the reward model picks 1 of n completions, against a random
  pick and against the oracle (any of the n passes);
- against the public tests: how often each of the reward model (sigmoid(score) >= 0.5) and the public
  tests agrees with the hidden verdict, how often they agree with each other, and the reward model's
  pairwise accuracy among completions that pass the public tests, where public tests cannot tell
  right from wrong.

Pure functions of the scored samples; `format_report` prints the table, `save_plots` writes PNGs.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class OneClassError(ValueError):
    """Every sample passed, or every sample failed: ranking metrics are undefined, not NaN."""


@dataclass(frozen=True)
class Scored:
    task_id: str
    score: float
    passed: bool  # the hidden tests' verdict
    public_passed: bool | None = None


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def by_problem(samples: Sequence[Scored]) -> dict[str, list[Scored]]:
    groups: dict[str, list[Scored]] = defaultdict(list)
    for s in samples:
        groups[s.task_id].append(s)
    return dict(groups)


def _pair_wins(good: Sequence[float], bad: Sequence[float]) -> float:
    return sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)


def pairwise_accuracy(samples: Sequence[Scored]) -> dict[str, Any]:
    """Accuracy over (pass, fail) pairs within each problem, and how many problems had no pair."""
    wins = pairs = 0.0
    skipped_few = skipped_one_class = used = 0
    for group in by_problem(samples).values():
        if len(group) < 2:
            skipped_few += 1
            continue
        good = [s.score for s in group if s.passed]
        bad = [s.score for s in group if not s.passed]
        if not good or not bad:
            skipped_one_class += 1
            continue
        wins += _pair_wins(good, bad)
        pairs += len(good) * len(bad)
        used += 1
    return {
        "accuracy": wins / pairs if pairs else None,
        "pairs": int(pairs),
        "problems": used,
        "skipped_fewer_than_two": skipped_few,
        "skipped_one_class": skipped_one_class,
    }


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The probability that a random positive outscores a random negative (ties one half)."""
    pos = sorted(s for s, y in zip(scores, labels, strict=True) if y)
    neg = sorted(s for s, y in zip(scores, labels, strict=True) if not y)
    if not pos or not neg:
        which = "passed" if pos else "failed"
        raise OneClassError(
            f"ROC-AUC needs passing and failing completions, but all {len(scores)} {which}: label completions "
            "from problems of mixed difficulty, or more samples per problem"
        )
    # Mann-Whitney U by ranks, with ties given their average rank.
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2
        rank_sum += avg_rank * sum(label for _, label in ranked[i:j])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def reliability(samples: Sequence[Scored], bins: int = 10) -> dict[str, Any]:
    """Equal-width bins of sigmoid(score): count, mean predicted probability, observed pass rate; and ECE."""
    rows = []
    ece = 0.0
    probs = [sigmoid(s.score) for s in samples]
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if not idx:
            rows.append({"lo": lo, "hi": hi, "count": 0, "mean_prob": None, "pass_rate": None})
            continue
        mean_prob = sum(probs[i] for i in idx) / len(idx)
        pass_rate = sum(samples[i].passed for i in idx) / len(idx)
        ece += len(idx) / len(samples) * abs(mean_prob - pass_rate)
        rows.append({"lo": lo, "hi": hi, "count": len(idx), "mean_prob": mean_prob, "pass_rate": pass_rate})
    return {"bins": rows, "ece": ece}


def best_of_n(samples: Sequence[Scored], n: int, *, trials: int = 20, seed: int = 0) -> dict[str, Any]:
    """Hidden pass rate of the reward model's pick of n random completions per problem, of a random pick
    (its expectation) and of the oracle, averaged over `trials` draws of the n; problems with fewer than
    n completions are left out and counted."""
    rng = random.Random(seed)
    rm = rand = oracle = 0.0
    used = skipped = 0
    for group in by_problem(samples).values():
        if len(group) < n:
            skipped += 1
            continue
        used += 1
        for _ in range(trials):
            pick = rng.sample(group, n)
            best = max(s.score for s in pick)
            top = [s for s in pick if s.score == best]  # ties: the expected value of a random top pick
            rm += sum(s.passed for s in top) / len(top) / trials
            rand += sum(s.passed for s in pick) / n / trials
            oracle += any(s.passed for s in pick) / trials
    if not used:
        return {"n": n, "problems": 0, "skipped": skipped, "rm": None, "random": None, "oracle": None}
    return {"n": n, "problems": used, "skipped": skipped, "rm": rm / used, "random": rand / used,
            "oracle": oracle / used}  # fmt: skip


def against_public_tests(samples: Sequence[Scored]) -> dict[str, Any] | None:
    """The reward model and the public tests, each against the hidden verdict and against each other."""
    known = [s for s in samples if s.public_passed is not None]
    if not known:
        return None
    rm_says = [sigmoid(s.score) >= 0.5 for s in known]
    public_pass = [s for s in known if s.public_passed]
    return {
        "samples": len(known),
        "rm_agrees_with_hidden": sum(r == s.passed for r, s in zip(rm_says, known, strict=True)) / len(known),
        "public_agrees_with_hidden": sum(s.public_passed == s.passed for s in known) / len(known),
        "rm_agrees_with_public": sum(r == s.public_passed for r, s in zip(rm_says, known, strict=True))
        / len(known),
        "public_false_passes": sum(not s.passed for s in public_pass),
        "rm_pairwise_among_public_passes": pairwise_accuracy(public_pass)["accuracy"],
    }


def rm_report(samples: Sequence[Scored], ns: Sequence[int] = (4, 8), bins: int = 10) -> dict[str, Any]:
    """Every metric above. Raises `OneClassError` when all samples share one verdict."""
    if not samples:
        raise ValueError("no scored samples to evaluate")
    auc = roc_auc([s.score for s in samples], [s.passed for s in samples])
    return {
        "samples": len(samples),
        "problems": len(by_problem(samples)),
        "pass_rate": sum(s.passed for s in samples) / len(samples),
        "pairwise": pairwise_accuracy(samples),
        "roc_auc": auc,
        "calibration": reliability(samples, bins),
        "best_of_n": [best_of_n(samples, n) for n in ns],
        "public_tests": against_public_tests(samples),
    }


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    pw = report["pairwise"]
    lines = [
        f"reward model on {report['samples']} completions of {report['problems']} problems "
        f"(hidden pass rate {report['pass_rate']:.3f})",
        f"  pairwise accuracy   {_f(pw['accuracy'])}  ({pw['pairs']} pairs in {pw['problems']} problems; skipped "
        f"{pw['skipped_fewer_than_two']} with < 2 completions, {pw['skipped_one_class']} all pass or all fail)",
        f"  ROC-AUC             {_f(report['roc_auc'])}",
        f"  calibration ECE     {_f(report['calibration']['ece'])}",
    ]
    for b in report["best_of_n"]:
        lines.append(
            f"  best-of-{b['n']:<2}         rm {_f(b['rm'])}  random {_f(b['random'])}  oracle {_f(b['oracle'])}"
            f"  ({b['problems']} problems)"
        )
    pub = report["public_tests"]
    if pub:
        lines.append(
            f"  vs hidden verdict   rm {_f(pub['rm_agrees_with_hidden'])}  public tests "
            f"{_f(pub['public_agrees_with_hidden'])}  (rm agrees with public {_f(pub['rm_agrees_with_public'])})"
        )
        lines.append(
            f"  public-test passes that fail hidden tests: {pub['public_false_passes']}; rm pairwise accuracy "
            f"among public passes {_f(pub['rm_pairwise_among_public_passes'])}"
        )
    return "\n".join(lines)


def save_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """`calibration.png` (reliability diagram) and `best_of_n.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    bins = [b for b in report["calibration"]["bins"] if b["count"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot([b["mean_prob"] for b in bins], [b["pass_rate"] for b in bins], "o-", label="reward model")
    ax.set(
        xlabel="sigmoid(score)", ylabel="hidden pass rate", title=f"ECE {report['calibration']['ece']:.3f}"
    )
    ax.legend()
    paths.append(out / "calibration.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rows = [b for b in report["best_of_n"] if b["problems"]]
    xs = range(len(rows))
    for k, (key, label) in enumerate(
        [("random", "random pick"), ("rm", "reward model"), ("oracle", "oracle")]
    ):
        ax.bar([x + (k - 1) * 0.27 for x in xs], [b[key] for b in rows], width=0.27, label=label)
    ax.set_xticks(list(xs), [f"best of {b['n']}" for b in rows])
    ax.set(ylabel="hidden pass rate")
    ax.legend()
    paths.append(out / "best_of_n.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths
