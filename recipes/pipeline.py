"""The whole job, what `make demo` runs: SFT -> label -> reward model -> GRPO -> evaluation, plus an
SFT-only control trained for the same wall time as label + reward model + GRPO.

    python -m recipes.pipeline                                  # the embedded CPU default
    python -m recipes.pipeline seed=1 output_dir=runs/pipeline-1
    python -m recipes.pipeline stages.grpo='[steps=2]' ...      # any stage's own overrides
    python -m recipes.pipeline experiment=rm_vs_execution       # GRPO on execution against GRPO on the RM

Each stage is its own recipe (`recipes.sft`, `recipes.label`, ...), composed from its own config with
the overrides listed under `stages.<name>` plus the paths that wire it to the stage before. Its
outputs go to `${output_dir}/<stage>`; a stage whose outputs are already there is skipped, so a rerun
of a killed pipeline continues where it stopped (`overwrite=true` starts over).

The control continues SFT from the SFT checkpoint, on the same data and with the same peak learning
rate (a cosine warm restart), for as many steps as the measured SFT speed fits into the wall time that
label + reward model + GRPO took, capped at that time. A gain that this control matches is a gain of
more SFT, not of RL.

`rewards` lists what GRPO trains on: `[execution]` (the default), `[rm]`, `[blend]`, or several, as
in `experiment=rm_vs_execution`. Each reward after the first gets a GRPO run of its own from the same SFT
policy, with the same steps, prompts, group size and seed, in `${output_dir}/grpo_<reward>` (the first
is `${output_dir}/grpo`); each is evaluated, and `rewards_compared.png` plots every run's training
curves with its held-out pass@1.

The run ends with a table (held-out pass@1 after SFT, after GRPO and of the control; the reward
model's accuracy; wall time per stage) and one line for outside tools:

    held-out pass@1: SFT 0.aa -> GRPO 0.bb (+cc.c points); same-time SFT-only 0.dd (GRPO +ee.e points over it)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from recipes.config import CONFIG_DIR, ConfigError, misspelt_override, recipe_main
from recipes.tracking import METRICS_FILE, plot_runs
from rewards.reward_model import LabelError
from rewards.rm_eval import OneClassError

SUMMARY_FILE = "summary.json"
COMPARISON_PLOT = "rewards_compared.png"


def stage_config(name: str, overrides: list[str]) -> DictConfig:
    """A recipe's config, composed as its own command line would compose it."""
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        return compose(name, overrides=overrides)


def run(cfg: DictConfig) -> dict[str, Any]:
    check_rewards(cfg)
    extra = {
        name: list(cfg.stages.get(name) or [])
        for name in ("sft", "label", "reward_model", "grpo", "eval", "control")
    }
    check_stage_overrides(extra)
    if cfg.sft_examples is not None and (not isinstance(cfg.sft_examples, int) or cfg.sft_examples < 1):
        raise ConfigError(f"sft_examples={cfg.sft_examples}: 1 or more, or null for the data config's number")
    out = Path(cfg.output_dir).resolve()
    if cfg.overwrite and out.exists():
        for child in out.iterdir():
            if child.name != ".hydra" and child.name != "pipeline.log":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = (
        json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}
    )
    seed = cfg.seed

    def stage(name: str, done: Path, fn: Callable[[], Any]) -> None:
        if done.exists():
            print(f"pipeline: {name}: already done ({done})", file=sys.stderr)
            return
        print(f"\n== pipeline: {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start
        (out / "times.json").write_text(json.dumps(times, indent=2))

    from recipes import eval as eval_recipe
    from recipes import grpo, label, reward_model, sft

    # 1. SFT: the tiny model from scratch on the labelled examples (the control trains on the same ones)
    sft_data = [f"data.train.0.rows.n={cfg.sft_examples}"] if cfg.sft_examples is not None else []
    sft_dir = out / "sft"
    sft_resume = ["resume=true"] if any(sft_dir.glob("checkpoint-*")) else []  # a killed SFT stage continues
    stage("sft", sft_dir / "sft_result.json", lambda: sft.run(stage_config(
        "sft", [f"output_dir={sft_dir}", f"trainer.seed={seed}", *sft_data, *sft_resume, *extra["sft"]])))  # fmt: skip
    policy = sft_dir / "final"

    # 2. label the SFT policy's samples: training problems for the reward model, held-out ones for its report
    labels, heldout_labels = out / "label" / "train.jsonl", out / "label" / "heldout.jsonl"
    stage("label", out / "label" / "done", lambda: (
        label.run(stage_config("label", [f"policy={policy}", f"out={labels}", f"sampling.seed={seed}", *extra["label"]])),
        label.run(stage_config("label", [f"policy={policy}", f"out={heldout_labels}", f"sampling.seed={seed}",
                                         *extra["label"], "problems.split=heldout", f"problems.n={cfg.heldout_label_problems}"])),
        (out / "label" / "done").touch(),
    ))  # fmt: skip

    # 3. the reward model, with its accuracy against the hidden tests of held-out problems
    rm_dir = out / "reward_model"

    def train_rm() -> None:
        needs_rm = [r for r in cfg.rewards if r != "execution"]
        try:
            # overwrite=true: a stage killed mid-training starts again
            reward_model.run(stage_config("reward_model", [
                f"backbone={policy}", f"labels={labels}", f"eval_labels={heldout_labels}", f"output_dir={rm_dir}",
                f"seed={seed}", "overwrite=true", *extra["reward_model"]]))  # fmt: skip
        except (LabelError, OneClassError) as e:
            if needs_rm:
                raise SystemExit(
                    f"error: reward={needs_rm[0]} needs a reward model, and it cannot be trained: {e}"
                ) from e
            print(f"pipeline: reward model skipped (GRPO uses the execution reward): {e}", file=sys.stderr)
            rm_dir.mkdir(parents=True, exist_ok=True)
            (rm_dir / "reward_model_result.json").write_text(json.dumps({"skipped": str(e)}) + "\n")

    stage("reward_model", rm_dir / "reward_model_result.json", train_rm)

    # 4. GRPO on fresh, unlabelled training prompts: one run from the SFT policy for each reward listed
    grpo_runs = {("grpo" if i == 0 else f"grpo_{r}"): r for i, r in enumerate(cfg.rewards)}
    for name, kind in grpo_runs.items():
        reward = [f"reward={kind}"] + ([f"reward.model={rm_dir / 'final'}"] if kind != "execution" else [])
        stage(name, out / name / "grpo_result.json", lambda name=name, reward=reward: grpo.run(stage_config(
            "grpo", [f"policy={policy}", f"output_dir={out / name}", f"seed={seed}", f"algorithm.seed={seed}",
                     "resume=true", *reward, *extra["grpo"]])))  # fmt: skip

    # 5. the SFT-only control, for the wall time that label + reward model + GRPO took
    control_dir = out / "control"
    budget = sum(times.get(k, 0.0) for k in ("label", "reward_model", "grpo"))
    if cfg.control:
        sft_result = json.loads((sft_dir / "sft_result.json").read_text())
        steps = max(1, int(budget * sft_result["steps"] / sft_result["seconds"]))
        peak_lr = OmegaConf.load(sft_dir / "config.yaml").trainer.learning_rate
        stage("control", control_dir / "sft_result.json", lambda: sft.run(stage_config(
            "sft", ["model=path", f"model.name={policy}", f"output_dir={control_dir}", f"trainer.seed={seed}", *sft_data,
                    f"trainer.max_steps={steps}", f"trainer.learning_rate={peak_lr}", "trainer.warmup_steps=0", f"max_seconds={budget:.1f}",
                    f"trainer.save_steps={steps}", f"trainer.eval_steps={steps}", "overwrite=true",  # a new budget
                    *extra["control"]])))  # fmt: skip

    # 6. held-out pass@1 of each model
    models = (
        {"sft": policy}
        | {name: out / name / "final" for name in grpo_runs}
        | ({"control": control_dir / "final"} if cfg.control else {})
    )
    for name, path in models.items():
        where = out / "eval" / name
        stage(f"eval_{name}", where / "eval.json", lambda path=path, where=where: eval_recipe.run(stage_config(
            "eval", [f"model_path={path}", f"output_dir={where}", *extra["eval"]])))  # fmt: skip

    summary = summarise(out, times, budget, cfg.control, grpo_runs)
    if len(grpo_runs) > 1:
        summary["comparison_plot"] = str(plot_runs(
            {f"reward={kind}": out / name / METRICS_FILE for name, kind in grpo_runs.items()},
            {f"reward={kind}": summary["pass@1"][name] for name, kind in grpo_runs.items()},
            out / COMPARISON_PLOT,
        ))  # fmt: skip
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def check_stage_overrides(extra: dict[str, list[str]]) -> None:
    """Refuse, before any stage runs, a `stages.<name>` override its recipe's config would refuse."""
    for name, overrides in extra.items():
        recipe = "sft" if name == "control" else name
        message = misspelt_override(recipe, overrides, composer=stage_config)
        if message:
            raise ConfigError(f"stages.{name}: {message}")
        try:
            stage_config(recipe, overrides)
        except Exception as e:  # Hydra's own refusal: a group option that does not exist, a bad value
            raise ConfigError(f"stages.{name}: {e}") from None


def check_rewards(cfg: DictConfig) -> None:
    """Refuse, before any stage runs, a reward that has no config, or one listed twice."""
    known = sorted(p.stem for p in (CONFIG_DIR / "reward").glob("*.yaml"))
    rewards = list(cfg.rewards)
    if not rewards:
        raise ConfigError(f"rewards: empty; list at least one of {', '.join(known)}")
    for reward in rewards:
        if reward not in known:
            raise ConfigError(f"rewards: unknown reward {reward!r}; choose from {', '.join(known)}")
    if len(set(rewards)) != len(rewards):
        raise ConfigError(f"rewards: {rewards} repeats a reward")


def summarise(
    out: Path, times: dict[str, float], budget: float, control: bool, grpo_runs: dict[str, str]
) -> dict[str, Any]:
    def pass1(name: str) -> float:
        return float(json.loads((out / "eval" / name / "eval.json").read_text())["pass@1"])

    rm_result = json.loads((out / "reward_model" / "reward_model_result.json").read_text())
    rm = rm_result.get("report", {})
    best = {b["n"]: b for b in rm.get("best_of_n", [])}
    summary: dict[str, Any] = {
        "heldout_problems": json.loads((out / "eval" / "sft" / "eval.json").read_text())["problems"],
        "pass@1": {"sft": pass1("sft")}
        | {name: pass1(name) for name in grpo_runs}
        | ({"control": pass1("control")} if control else {}),
        "rewards": grpo_runs,
        "reward_model": {
            "pairwise_accuracy": rm.get("pairwise", {}).get("accuracy"),
            "pairs": rm.get("pairwise", {}).get("pairs"),  # (pass, fail) pairs of one problem's samples
            "pair_problems": rm.get("pairwise", {}).get("problems"),  # the problems with both
            "roc_auc": rm.get("roc_auc"),
            "samples": rm.get("samples"),
            "best_of_n": best.get(max(best)) if best else None,
            "skipped": rm_result.get("skipped"),
        },
        "seconds": times,
        "control_budget_s": budget,
    }
    return summary


def summary_lines(s: dict[str, Any]) -> list[str]:
    p, rm = s["pass@1"], s["reward_model"]
    runs = s.get("rewards", {"grpo": ""})
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"{'':<34}{'held-out pass@1':>16}   ({s['heldout_problems']} problems, greedy, hidden tests)",
        f"{'after SFT':<34}{p['sft']:>16.3f}",
    ]
    for name, kind in runs.items():
        label = f"after GRPO (reward={kind})" if len(runs) > 1 else "after GRPO"
        lines.append(f"{label:<34}{p[name]:>16.3f}")
    if "control" in p:
        lines.append(f"{'SFT-only control (same time)':<34}{p['control']:>16.3f}")
    if rm.get("skipped"):
        lines.append(f"reward model: skipped ({rm['skipped']})")
    else:
        # a few problems with both passing and failing samples make the pairwise figure noisy: say how few
        lines.append(
            f"reward model: pairwise accuracy {fmt(rm['pairwise_accuracy'])} "
            f"({rm.get('pairs')} pairs in {rm.get('pair_problems')} problems), "
            f"ROC-AUC {fmt(rm['roc_auc'])} ({rm.get('samples')} samples)"
        )
    if rm["best_of_n"]:
        b = rm["best_of_n"]
        lines.append(
            f"  best-of-{b['n']}: rm {fmt(b['rm'])}, random {fmt(b['random'])}, oracle {fmt(b['oracle'])}"
        )
    lines.append("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in s["seconds"].items()))
    if "comparison_plot" in s:
        lines.append(f"training curves of each reward: {s['comparison_plot']}")
    gain = 100 * (p["grpo"] - p["sft"])
    last = f"held-out pass@1: SFT {p['sft']:.2f} -> GRPO {p['grpo']:.2f} ({gain:+.1f} points)"
    if "control" in p:
        last += f"; same-time SFT-only {p['control']:.2f} (GRPO {100 * (p['grpo'] - p['control']):+.1f} points over it)"
    lines.append(last)
    return lines


@recipe_main("pipeline")
def main(cfg: DictConfig) -> None:
    start = time.perf_counter()
    summary = run(cfg)
    print(f"\npipeline: {OmegaConf.select(cfg, 'output_dir')} in {time.perf_counter() - start:.0f}s")
    print("\n".join(summary_lines(summary)))


if __name__ == "__main__":
    main()
