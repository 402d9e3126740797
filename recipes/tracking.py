"""What a training run leaves for its user to read: metrics (JSONL, TensorBoard, and wandb or mlflow
when asked for and installed), samples of completions with their grades (JSONL and one HTML page),
and PNG plots of the metrics over steps.

    log = RunLog(out, loggers=["tensorboard"], config=cfg_dict)
    log.metrics(step, {"reward/mean": 0.4, ...})
    log.samples(step, rows)
    log.close()                     # writes samples.html and plots/*.png
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

LOGGERS = ("jsonl", "tensorboard", "wandb", "mlflow")
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
TRACKERS_FILE = "trackers.json"  # wandb and mlflow run ids, and where the mlflow run is
MLFLOW_DB = "mlflow.db"  # where mlflow logs when MLFLOW_TRACKING_URI is not set
PLOTTED = (
    ("reward/mean", "reward"),
    ("pass_rate", "pass rate (public tests)"),
    ("loss/kl", "KL to the reference"),
    ("loss/clip_frac", "clip fraction"),
    ("completion/length_mean", "completion length (tokens)"),
    ("batch/zero_variance_frac", "groups with all-equal rewards"),
)


class RunLog:
    """Appends to `metrics.jsonl` and `samples.jsonl` in `out`; a resumed run keeps what is there up to
    its step and appends after it."""

    def __init__(
        self, out: Path, *, loggers: Sequence[str] = ("tensorboard",), config: dict[str, Any] | None = None,
        project: str = "grpo-coder", resume_step: int | None = None,
    ) -> None:  # fmt: skip
        require_loggers(loggers)
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, SAMPLES_FILE):
            _truncate_after(out / name, resume_step)
        self._tb = self._wandb = self._mlflow = None
        if "tensorboard" in loggers:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "runs"))
        # A resumed run continues the wandb and mlflow runs it started, by the ids kept in TRACKERS_FILE.
        ids = _read_ids(out / TRACKERS_FILE) if resume_step is not None else {}
        if "wandb" in loggers:
            wandb = _optional("wandb")
            self._wandb = wandb.init(
                project=project, dir=str(out), name=run_name(out), config=config or {},
                id=ids.get("wandb"), resume="allow" if "wandb" in ids else None,
            )  # fmt: skip
            ids["wandb"] = self._wandb.id
        if "mlflow" in loggers:
            mlflow = _optional("mlflow")
            # MLFLOW_TRACKING_URI when set, else the run's own database beside its other outputs; a resumed
            # run goes back to where its mlflow run is
            own = f"sqlite:///{(out / MLFLOW_DB).resolve()}"
            ids["mlflow_uri"] = ids.get("mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI") or own
            mlflow.set_tracking_uri(ids["mlflow_uri"])
            if "mlflow" in ids:
                try:
                    mlflow.start_run(run_id=ids["mlflow"])
                except mlflow.exceptions.MlflowException as e:
                    raise RuntimeError(
                        f"cannot continue mlflow run {ids['mlflow']} (from {out / TRACKERS_FILE}) at "
                        f"{ids['mlflow_uri']}: {e}"
                    ) from None
            else:
                mlflow.set_experiment(project)
                mlflow.start_run(run_name=run_name(out))
                mlflow.log_params(_flat(config or {}))
            ids["mlflow"] = mlflow.active_run().info.run_id
            self._mlflow = mlflow
        if ids:
            (out / TRACKERS_FILE).write_text(json.dumps(ids) + "\n")

    def metrics(self, step: int, values: dict[str, float]) -> None:
        with (self.out / METRICS_FILE).open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({k.replace("/", "."): v for k, v in values.items()}, step=step)

    def samples(self, step: int, rows: Iterable[dict[str, Any]]) -> None:
        with (self.out / SAMPLES_FILE).open("a") as f:
            f.writelines(json.dumps({"step": step, **row}) + "\n" for row in rows)

    def close(self, failed: bool = False) -> None:
        """Flush every logger; `failed` marks the wandb and mlflow runs as failed (a crash or Ctrl-C)."""
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)
        if self._mlflow is not None:
            self._mlflow.end_run(status="FAILED" if failed else "FINISHED")
        write_samples_html(self.out / SAMPLES_FILE, self.out / "samples.html")
        plot_metrics(self.out / METRICS_FILE, self.out / "plots")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of `path` (rewards' line-numbered reader); none when the run has not written it yet."""
    from rewards.problems import read_jsonl as read_rows

    return read_rows(path) if path.exists() else []


def _truncate_after(path: Path, step: int | None) -> None:
    """Keep the rows of steps <= `step` (all of them for a fresh run: nothing; the file is removed)."""
    if not path.exists():
        return
    if step is None:
        path.unlink()
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError):
            break  # a torn last line from a killed run
    path.write_text("".join(kept))


def require_loggers(loggers: Sequence[str]) -> None:
    """Refuse an unknown logger, or one whose package is not installed."""
    unknown = [name for name in loggers if name not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown logger(s) {unknown}: choose from {', '.join(LOGGERS)}")
    for name in ("wandb", "mlflow"):
        if name in loggers:
            _optional(name)


def run_name(out: Path) -> str:
    """What the trackers call a run: the last two parts of its folder (`seed-0/grpo` in a demo)."""
    return "/".join(out.resolve().parts[-2:])


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise SystemExit(
            f"error: logger={name} needs the `{name}` package: pip install {name} "
            "(or the project's `trackers` extra: pip install -e '.[trackers]')"
        ) from None


def _read_ids(path: Path) -> dict[str, str]:
    """The tracker run ids a run wrote (none before its first start)."""
    if not path.exists():
        return {}
    try:
        ids = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not the JSON object of tracker run ids a run writes ({e})") from None
    if not isinstance(ids, dict):
        raise ValueError(f"{path}: not the JSON object of tracker run ids a run writes")
    return ids


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = str(v)[:250]
    return out


def plot_metrics(metrics: Path, folder: Path) -> list[Path]:
    """One PNG per metric in `PLOTTED` that the run logged, over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(metrics)
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for key, title in PLOTTED:
        points = [(r["step"], r[key]) for r in rows if key in r]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(*zip(*points, strict=True), lw=1.2)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def plot_runs(runs: dict[str, Path], heldout_pass1: dict[str, float], path: Path, window: int = 5) -> Path:
    """One PNG comparing runs: each run's training pass rate and mean reward over steps (thin: each step;
    bold: the mean of the last `window` steps), labelled with its held-out pass@1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (("pass_rate", "pass rate of the policy's samples (tests)"),
              ("reward/mean", "reward the run trained on (mean)"))  # fmt: skip
    for (key, title), ax in zip(panels, axes, strict=True):
        for i, (name, metrics) in enumerate(runs.items()):
            points = [(r["step"], r[key]) for r in read_jsonl(metrics) if key in r]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            smooth = [sum(values[max(0, j - window + 1) : j + 1]) / len(values[max(0, j - window + 1) : j + 1])
                      for j in range(len(values))]  # fmt: skip
            ax.plot(steps, values, lw=0.8, alpha=0.35, color=f"C{i}")
            ax.plot(
                steps, smooth, lw=2, color=f"C{i}", label=f"{name}: held-out pass@1 {heldout_pass1[name]:.3f}"
            )
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_samples_html(samples: Path, page: Path) -> None:
    """One static page: every logged sample with its prompt, completion, verdict, reward and first
    failing test, newest step first."""
    rows = read_jsonl(samples)
    parts = [
        "<!doctype html><meta charset=utf-8><title>samples</title><style>"
        "body{font:14px sans-serif;margin:2em}pre{background:#f5f5f5;padding:.5em;white-space:pre-wrap}"
        ".passed{color:#070}.failed{color:#a00}td{vertical-align:top;padding:.3em}</style>",
        f"<h1>{len(rows)} samples</h1>",
    ]
    for r in sorted(rows, key=lambda r: -r.get("step", 0)):
        cls = "passed" if r.get("verdict") == "passed" else "failed"
        failure = r.get("failure") or ""
        parts.append(
            f"<h3>step {r.get('step')} · {html.escape(str(r.get('task_id')))} · "
            f"<span class={cls}>{html.escape(str(r.get('verdict')))}</span> · reward {r.get('reward', 0):.3f} · "
            f"tests {r.get('tests_passed')}/{r.get('tests_total')}</h3>"
            f"<pre>{html.escape(r.get('prompt', ''))}<b>{html.escape(r.get('completion', ''))}</b></pre>"
            + (
                f"<p>first failing test: <code>{html.escape(json.dumps(failure))}</code></p>"
                if failure
                else ""
            )
        )
    page.write_text("\n".join(parts))


def metrics_line(step: int, total: int, values: dict[str, float], keys: Sequence[str]) -> str:
    shown = " ".join(f"{k}={values[k]:.4g}" for k in keys if k in values)
    return f"step {step}/{total} {shown}"
