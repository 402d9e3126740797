"""`recipes.tracking.RunLog` with the optional trackers installed for real (the project's `trackers`
extra): wandb in offline mode and mlflow in the run's own SQLite database receive the config and the
metrics, a failed run is marked failed, and a resumed run continues the same tracker runs."""

import json
import sys

import pytest

from recipes.tracking import MLFLOW_DB, TRACKERS_FILE, RunLog, require_loggers

LOGGERS = ["jsonl", "wandb", "mlflow"]
CONFIG = {"algorithm": {"lr": 5e-5, "loss_type": "grpo"}, "steps": 4}


@pytest.fixture
def trackers_offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def log_steps(log, steps):
    for step in steps:
        log.metrics(step, {"reward/mean": step / 10, "loss/kl": 0.01 * step})


def test_wandb_and_mlflow_get_the_metrics_and_a_resumed_run_continues_their_runs(
    tmp_path, trackers_offline, monkeypatch
):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "grpo-run"
    log = RunLog(out, loggers=LOGGERS, config=CONFIG)
    log_steps(log, [1, 2])
    log.close(failed=True)  # as when the run is killed after step 2
    ids = json.loads((out / TRACKERS_FILE).read_text())
    assert set(ids) == {"wandb", "mlflow", "mlflow_uri"}
    client = MlflowClient(tracking_uri=f"sqlite:///{out / MLFLOW_DB}")
    run = client.get_run(ids["mlflow"])
    assert run.info.status == "FAILED" and run.info.run_name == f"{tmp_path.name}/grpo-run"
    assert run.data.params["algorithm.lr"] == "5e-05" and run.data.params["steps"] == "4"

    # resumed where MLFLOW_TRACKING_URI now points elsewhere: the run goes on where it started
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    resumed = RunLog(out, loggers=LOGGERS, config=CONFIG, resume_step=2)
    log_steps(resumed, [3, 4])
    resumed.close()
    assert json.loads((out / TRACKERS_FILE).read_text()) == ids  # the same runs, continued
    history = client.get_metric_history(ids["mlflow"], "reward.mean")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    assert client.get_run(ids["mlflow"]).info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1

    # wandb offline: the run's file(s) under its one id (a start in the same second reuses the folder)
    files = sorted((out / "wandb").glob(f"offline-run-*-{ids['wandb']}/run-{ids['wandb']}.wandb"))
    assert files and all(b"reward/mean" in f.read_bytes() and b"loss/kl" in f.read_bytes() for f in files)
    assert len(list((out / "wandb").glob("offline-run-*"))) == len(files)  # no run under another id


def test_a_resume_that_cannot_find_its_runs_says_where_it_looked(tmp_path, trackers_offline):
    out = tmp_path / "run"
    RunLog(out, loggers=["jsonl", "mlflow"], config=CONFIG).close()
    (out / MLFLOW_DB).unlink()  # the run's mlflow database is gone
    with pytest.raises(
        RuntimeError, match=r"cannot continue mlflow run \w+ \(from .*trackers.json\) at sqlite"
    ):
        RunLog(out, loggers=["jsonl", "mlflow"], resume_step=1)
    (out / TRACKERS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"trackers.json: not the JSON object of tracker run ids"):
        RunLog(out, loggers=["jsonl", "mlflow"], resume_step=1)


def test_a_fresh_run_starts_new_tracker_runs(tmp_path, trackers_offline):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    first = RunLog(out, loggers=LOGGERS, config=CONFIG)
    first.close()
    before = json.loads((out / TRACKERS_FILE).read_text())
    second = RunLog(out, loggers=LOGGERS, config=CONFIG)  # overwrite=true: not a resume
    second.close()
    after = json.loads((out / TRACKERS_FILE).read_text())
    assert after["wandb"] != before["wandb"] and after["mlflow"] != before["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{out / MLFLOW_DB}")
    assert client.get_run(after["mlflow"]).info.status == "FINISHED"


def test_mlflow_logs_where_mlflow_tracking_uri_points(tmp_path, trackers_offline, monkeypatch):
    from mlflow.tracking import MlflowClient

    server = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    out = tmp_path / "run"
    log = RunLog(out, loggers=["jsonl", "mlflow"], config=CONFIG)
    log_steps(log, [1])
    log.close()
    assert not (out / MLFLOW_DB).exists()
    run_id = json.loads((out / TRACKERS_FILE).read_text())["mlflow"]
    assert MlflowClient(tracking_uri=server).get_run(run_id).data.metrics["reward.mean"] == 0.1


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_missing_tracker_package_is_named_with_how_to_install_it(tmp_path, monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # as if it were not installed: importing it fails
    with pytest.raises(SystemExit, match=rf"logger={tracker} needs the `{tracker}` package: pip install "
                       rf"{tracker} \(or the project's `trackers` extra: pip install -e '\.\[trackers\]'\)"):  # fmt: skip
        require_loggers(["jsonl", "tensorboard", tracker])
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit, match=rf"logger={tracker} needs"):
        RunLog(tmp_path / "run", loggers=["jsonl", tracker])


def test_an_unknown_logger_is_refused_with_the_choices():
    with pytest.raises(
        ValueError, match=r"unknown logger\(s\) \['tensorbord'\]: choose from jsonl, tensorboard"
    ):
        require_loggers(["jsonl", "tensorbord"])
