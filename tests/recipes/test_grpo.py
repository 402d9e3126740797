"""`recipes.grpo` end to end on the tiny SFT policy: the outputs a run leaves, Ctrl-C then resume ending at
the same metrics as an uninterrupted run, rewards from a reward model, the Ray + vLLM rollout, and
refusals of bad configs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from recipes.config import misspelt_override
from recipes.grpo import run
from recipes.tracking import MLFLOW_DB, TRACKERS_FILE
from rewards.blend import combine
from tests.recipes.conftest import ROOT, compose_cfg

FAST = ["steps=4", "prompts_per_step=4", "group_size=4", "sampling.max_tokens=32", "grader.workers=2",
        "log_every=1", "samples_every=2", "samples_per_log=2", "save_every=2",
        "rollout.engine_options.batch_size=16", "algorithm.lr=1e-4", "algorithm.warmup_steps=0",
        "grader.reward.kind=fraction"]  # fmt: skip
TIMING = ("time/", "perf/", "sync/seconds")
# every logger, the optional trackers included (wandb offline; mlflow in the run's own database)
TRACKED = ["logger.loggers=[jsonl,tensorboard,wandb,mlflow]"]


def grpo_cli(*overrides, wait=True):
    cmd = [sys.executable, "-m", "recipes.grpo", *overrides]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if wait:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def tracked_history(out, key="reward/mean"):
    """(step, value) of a metric as mlflow recorded it, the mlflow run's status, and the wandb run files."""
    from mlflow.tracking import MlflowClient

    ids = json.loads((out / TRACKERS_FILE).read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{out / MLFLOW_DB}")
    history = [(m.step, m.value) for m in client.get_metric_history(ids["mlflow"], key.replace("/", "."))]
    wandb_files = list((out / "wandb").glob(f"offline-run-*-{ids['wandb']}/run-{ids['wandb']}.wandb"))
    return history, client.get_run(ids["mlflow"]).info.status, wandb_files


def untimed(row):
    return {k: v for k, v in row.items() if not k.startswith(TIMING)}


@pytest.fixture(scope="module")
def uninterrupted(tiny_sft, tmp_path_factory):
    _, result = tiny_sft
    out = tmp_path_factory.mktemp("grpo") / "straight"
    done = grpo_cli(f"policy={result.model_dir}", f"output_dir={out}", *FAST, *TRACKED)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, result.model_dir, done


def test_a_run_leaves_metrics_samples_plots_and_checkpoints(uninterrupted):
    out, _, done = uninterrupted
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("reward/mean", "pass_rate", "loss/clip_frac", "loss/entropy", "completion/length_mean",
                "batch/zero_variance_frac", "sync/bytes", "time/generate_s", "time/grade_s", "grad_norm"):  # fmt: skip
        assert all(key in r for r in rows), key
    assert rows[0]["sync/bytes"] > 1e6  # the whole policy went to the rollout worker
    # the SFT policy's completions pass some tests and fail others: some groups carry a signal
    assert any(r["reward/mean"] > 0 for r in rows)
    assert any(r["batch/zero_variance_frac"] < 1 and r["grad_norm"] > 0 for r in rows)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2, 4} and len(samples) == 3 * 2 * 4
    for s in samples:
        assert s["prompt"].startswith("def f(x: int) -> int:") and s["verdict"]
        if s["verdict"] in ("passed", "wrong_answer"):  # fraction: the tests passed, over all of them
            assert s["reward"] == pytest.approx(s["tests_passed"] / s["tests_total"])
        else:
            assert s["reward"] == 0.0
        assert s["verdict"] == "passed" or s["failure"] or s["verdict"] in ("no_code", "compile_error")
    page = (out / "samples.html").read_text()
    assert page.count("<h3>step") == len(samples)
    assert {p.name for p in (out / "plots").iterdir()} >= {"reward_mean.png", "pass_rate.png",
                                                         "batch_zero_variance_frac.png", "loss_clip_frac.png"}  # fmt: skip
    assert list((out / "runs").glob("events.out.tfevents.*"))
    history, status, wandb_files = tracked_history(out)
    assert history == [(r["step"], r["reward/mean"]) for r in rows] and status == "FINISHED"
    assert wandb_files and b"reward/mean" in wandb_files[0].read_bytes()
    assert (out / "checkpoint-2" / "learner_state.pt").exists() and (out / "config.yaml").exists()
    result = json.loads((out / "grpo_result.json").read_text())
    assert result["steps"] == 4 and result["last_metrics"]["step"] == 4
    assert "step 4/4 reward/mean=" in done.stderr
    from grpo.models import load_model

    model, _ = load_model(result["final"])
    start, _ = load_model(uninterrupted[1])
    moved = sum(
        float((a - b).abs().sum()) for a, b in zip(model.parameters(), start.parameters(), strict=True)
    )
    assert moved > 0


def test_ctrl_c_saves_a_checkpoint_and_resume_ends_at_the_same_metrics(uninterrupted, tmp_path):
    straight, policy, _ = uninterrupted
    out = tmp_path / "interrupted"
    args = [f"policy={policy}", f"output_dir={out}", *FAST, *TRACKED, "save_every=0"]
    proc = grpo_cli(*args, wait=False)
    deadline = time.time() + 300
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output[-3000:]
    assert "continue with resume=true" in output
    saved = [p.name for p in out.glob("checkpoint-*")]
    assert len(saved) == 1 and saved[0] in ("checkpoint-1", "checkpoint-2"), saved
    assert not (out / "grpo_result.json").exists()
    assert tracked_history(out)[1] == "FAILED"  # the stopped run, as mlflow shows it until it is resumed
    # a second run without resume=true refuses to write over it
    refused = grpo_cli(*args)
    assert refused.returncode != 0 and "unfinished GRPO run" in refused.stderr
    resumed = grpo_cli(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ours, theirs = metrics(out), metrics(straight)
    assert [r["step"] for r in ours] == [1, 2, 3, 4]
    for a, b in zip(ours, theirs, strict=True):
        assert untimed(a) == pytest.approx(untimed(b), rel=1e-5, abs=1e-7)
    assert json.loads((out / "grpo_result.json").read_text())["resumed_at"] == int(saved[0].split("-")[1])
    history, status, _ = tracked_history(out)  # the resumed run continued the mlflow run it started
    assert history == [(r["step"], r["reward/mean"]) for r in ours] and status == "FINISHED"
    again = grpo_cli(*args, "resume=true")  # a finished run: nothing to do, nothing rewritten
    assert again.returncode == 0 and "nothing to resume" in again.stderr
    assert metrics(out) == ours


def tiny_reward_model(path):
    """An untrained sequence-classification head on `tiny`: a real reward model, as recipes.reward_model
    saves one, for the plumbing of reward=rm and reward=blend."""
    from transformers import AutoModelForSequenceClassification

    from grpo.models import load_model

    policy, tokenizer = load_model("tiny")
    config = policy.config
    config.num_labels, config.pad_token_id = 1, tokenizer.eos_token_id
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_blend_reward_mixes_reward_model_scores_with_execution(tiny_sft, tmp_path):
    _, result = tiny_sft
    rm = tiny_reward_model(tmp_path / "rm")
    cfg = compose_cfg("grpo", [f"policy={result.model_dir}", f"output_dir={tmp_path / 'run'}", *FAST,
                               "steps=1", "samples_every=1", "samples_per_log=4", "reward=blend",
                               f"reward.model={rm}", "reward.alpha=0.25"])  # fmt: skip
    run(cfg)
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    execution = [s["tests_passed"] / s["tests_total"] if s["verdict"] in ("passed", "wrong_answer") else 0.0
                 for s in samples]  # fmt: skip
    expected = combine("blend", execution, [s["rm_score"] for s in samples], 4, alpha=0.25)
    assert [s["reward"] for s in samples] == pytest.approx(expected)
    row = metrics(tmp_path / "run")[0]
    assert "reward/rm_mean" in row and row["reward/mean"] == pytest.approx(sum(expected) / 16, abs=1e-6)


@pytest.mark.vllm
def test_ray_vllm_rollout_syncs_weights_to_the_engines(tiny_sft, tmp_path):
    _, result = tiny_sft
    fast = [o for o in FAST if not o.startswith("rollout.engine_options.batch_size")]  # an HF option
    done = grpo_cli(f"policy={result.model_dir}", f"output_dir={tmp_path}", *fast, "steps=2",
                    "rollout=ray_vllm", "rollout.num_cpus=2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics(tmp_path)
    assert [r["sync/version"] for r in rows] == [1, 2]
    assert all(r["sync/bytes"] > 1e6 and r["batch/completions"] == 16 for r in rows)
    assert all("rollout/resubmits" in r and r["rollout/resubmits"] == 0 for r in rows)


def test_config_typos_and_contradictions_are_refused(tmp_path):
    assert misspelt_override("grpo", ["policy=x", "algorithm.lrr=1"]) == (
        "unknown key algorithm.lrr; did you mean algorithm.lr?"
    )
    assert "did you mean steps?" in misspelt_override("grpo", ["stepz=3"])
    assert "did you mean rollout.engine_options" in misspelt_override(
        "grpo", ["rollout=ray_vllm", "rollout.engine_option.seed=1"]
    )
    assert misspelt_override("grpo", ["rollout=ray_vllm", "rollout.workers.num_workers=3"]) is None
    cli = grpo_cli("policy=tiny", f"output_dir={tmp_path}", "algorithm.clip_hgh=0.3")
    assert cli.returncode != 0 and "did you mean algorithm.clip_high?" in cli.stderr
    base = ["policy=tiny", f"output_dir={tmp_path}"]
    with pytest.raises(SystemExit, match=r"did you mean algorithm\.kl_coef"):
        run(compose_cfg("grpo", [*base, "+algorithm.kl_coeff=0.1"]))
    with pytest.raises(SystemExit, match=r"dr_grpo with algorithm\.scale=group"):
        run(compose_cfg("grpo", [*base, "algorithm=dr_grpo", "algorithm.scale=group"]))
    with pytest.raises(SystemExit, match=r"reward\.kind=rm needs reward\.model"):
        run(compose_cfg("grpo", [*base, "reward=rm"]))
    with pytest.raises(SystemExit, match="group_size=1"):
        run(compose_cfg("grpo", [*base, "group_size=1"]))
    with pytest.raises(SystemExit, match=r"reward\.iterative\.every is set with reward\.kind=execution"):
        run(compose_cfg("grpo", [*base, "reward.iterative.every=2"]))
    with pytest.raises(SystemExit, match=r"no KL reference to reset"):
        run(compose_cfg("grpo", [*base, "reward=rm", "reward.model=rm", "reward.iterative.every=2",
                                 "reward.iterative.reset_reference=true"]))  # fmt: skip


def test_with_a_ray_rollout_the_reward_model_scores_in_its_own_actor(tiny_sft, tmp_path):
    from rewards.reward_model import RewardModelScorer

    _, result = tiny_sft
    rm = tiny_reward_model(tmp_path / "rm")
    fast = [o for o in FAST if not o.startswith("rollout.engine_options.batch_size")]
    done = grpo_cli(f"policy={result.model_dir}", f"output_dir={tmp_path / 'run'}", *fast, "steps=1",
                    "samples_every=1", "samples_per_log=4", "rollout=ray_hf", "rollout.num_cpus=2",
                    "reward=rm", f"reward.model={rm}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    here = RewardModelScorer(rm).score([s["prompt"] for s in samples], [s["completion"] for s in samples])
    assert [s["rm_score"] for s in samples] == pytest.approx(here, abs=1e-5)
    assert [s["reward"] for s in samples] == [s["rm_score"] for s in samples]  # reward=rm: the score itself


def write_labels(path, n):
    """`n` labelled rows of both classes, as recipes.label writes them: the older labels to replay."""
    rows = [{"task_id": f"old/{i}", "prompt": "def f(x: int) -> int:\n", "completion": f"    return x + {i}\n",
             "passed": i % 2 == 0, "pass_fraction": float(i % 2 == 0), "verdict": "passed"} for i in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_iterative_rl_retrains_the_reward_model_on_the_policys_samples(tiny_sft, tmp_path):
    """reward.iterative.every=2 over 4 steps: at step 2 the reward model is trained further on the 32
    samples graded in steps 1-2 plus replayed older labels, scores from step 3 on are the new model's, and
    the KL reference is reset to the policy (saved for a resume)."""
    from rewards.reward_model import RewardModelScorer

    _, result = tiny_sft
    rm = tiny_reward_model(tmp_path / "rm")
    out = tmp_path / "run"
    cfg = compose_cfg("grpo", [f"policy={result.model_dir}", f"output_dir={out}", *FAST, "samples_every=1",
                               "samples_per_log=4", "reward=rm", f"reward.model={rm}", "reward.iterative.every=2",
                               f"reward.iterative.labels={write_labels(tmp_path / 'old.jsonl', 12)}",
                               "reward.iterative.replay=0.2", "reward.iterative.reset_reference=true",
                               "algorithm.kl_coef=0.04"])  # fmt: skip
    run(cfg)
    rows = metrics(out)
    assert [r.get("rm_iter/retrained") for r in rows] == [None, 1.0, None, None]  # not after the last step
    assert rows[1]["rm_iter/fresh"] == 32 and rows[1]["rm_iter/replayed"] == 8  # 0.2 of 40 = 8 of the 12
    labels = [json.loads(line) for line in (out / "rm_iterations" / "labels.jsonl").read_text().splitlines()]
    assert [sum(r["step"] == s for r in labels) for s in (1, 2, 3, 4)] == [16, 16, 16, 16]
    retrained = out / "rm_iterations" / "step-2" / "final"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    later = [s for s in samples if s["step"] >= 3]
    texts = ([s["prompt"] for s in later], [s["completion"] for s in later])
    assert [s["rm_score"] for s in later] == pytest.approx(
        RewardModelScorer(retrained).score(*texts), abs=1e-5
    )
    assert [s["rm_score"] for s in later] != pytest.approx(RewardModelScorer(rm).score(*texts), abs=1e-3)
    assert (out / "rm_iterations" / "reference-2" / "model.safetensors").exists()


def test_iterative_state_on_resume(tmp_path):
    """A run resumed at step 3 keeps the labels of steps 1-3 (older: up to its last retraining at step 2),
    scores with step 2's reward model, and takes the reference saved at step 2."""
    from omegaconf import OmegaConf

    from recipes.iterative import IterativeRewardModel

    spec = compose_cfg(
        "grpo", ["policy=tiny", "reward=rm", "reward.model=rm0", "reward.iterative.every=2"]
    ).reward
    d = tmp_path / "rm_iterations"
    for name in ("step-2/final", "step-4/final", "reference-2", "reference-4"):
        (d / name).mkdir(parents=True)
    rows = [json.loads(line) | {"step": 1 + i // 3} for i, line in
            enumerate(write_labels(tmp_path / "l.jsonl", 12).read_text().splitlines())]  # fmt: skip
    (d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # steps 1-4, 3 rows each
    state = IterativeRewardModel(spec, tmp_path, start_step=3, seed=0)
    assert state.model == str(d / "step-2" / "final") and state.iteration_steps == [2]
    assert (len(state.older), len(state.fresh)) == (6, 3)
    assert (
        len((d / "labels.jsonl").read_text().splitlines()) == 9
    )  # step 4's rows, after the checkpoint, dropped
    assert state.last_reference(3) == d / "reference-2"
    fresh = IterativeRewardModel(OmegaConf.merge(spec, {"iterative": {"labels": str(tmp_path / "l.jsonl")}}),
                                 tmp_path / "new", start_step=0, seed=0)  # fmt: skip
    assert (fresh.model, len(fresh.older), fresh.fresh) == ("rm0", 12, [])
