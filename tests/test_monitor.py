"""Step-resolution metrics (steps.csv) and the TensorBoard and MLflow trackers, read
back from what they wrote."""

from __future__ import annotations

import csv

import pytest

from dalab.training import make_config, train
from dalab.training.monitor import STEP_ROWS, log_interval

TINY = dict(max_train=256, max_eval=256, batch_size=32, epochs=2, threads=1,
            device="cpu", protocol="tst_tt")  # 8 steps per epoch


def _cfg(data_root, cache_dir, **kw):
    return make_config("quick", **{**TINY, "data_root": str(data_root),
                                   "cache_dir": str(cache_dir), **kw})


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_default_interval_gives_a_few_hundred_rows_per_run():
    cfg = make_config("quick")
    for total in (1, 50, 299, 300, 936, 9370, 100_000):
        every = log_interval(cfg, total)
        assert every >= 1
        assert min(total, STEP_ROWS) <= total // every <= 2 * STEP_ROWS
    assert log_interval(make_config("quick", log_every=7), 936) == 7


@pytest.fixture(scope="module")
def tb_run(data_root, cache_dir, tmp_path_factory):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("tb") / "run"
    cfg = _cfg(data_root, cache_dir, logger="tensorboard", log_every=3)
    return cfg, out, train(cfg, out, log=lambda s: None)


def test_steps_csv_has_a_row_every_interval_and_at_each_epoch_end(tb_run):
    cfg, out, result = tb_run
    rows = _rows(out / "steps.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == [3, 6, 8, 9, 12, 15, 16]  # every 3 steps, plus each epoch's last
    assert [int(r["epoch"]) for r in rows] == [1, 1, 1, 2, 2, 2, 2]
    assert {"loss", "class_loss", "domain_loss", "train_acc", "domain_acc", "lambda",
            "lr", "seconds"} <= set(rows[0])
    lambdas = [float(r["lambda"]) for r in rows]
    assert lambdas == sorted(lambdas) and lambdas[-1] <= cfg.grl_lambda  # the ramp
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < cfg.lr  # annealed
    epochs = _rows(out / "metrics.csv")
    assert [int(r["step"]) for r in epochs] == [8, 16] and result.steps == 16


def test_steps_csv_default_density(data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    result = train(_cfg(data_root, cache_dir, protocol="ts_ts", epochs=1), out,
                   log=lambda s: None)
    assert len(_rows(out / "steps.csv")) == result.steps == 8  # short run: every step


def test_logged_lr_is_the_one_each_step_trains_with(data_root, cache_dir, tmp_path):
    # ADDA's phase 2 (from the first epoch's end here) trains at its own constant adda_lr
    out = tmp_path / "run"
    train(_cfg(data_root, cache_dir, method="adda", adda_pretrain=0.5, adda_lr=3e-4,
               log_every=1), out, log=lambda s: None)
    rows = _rows(out / "steps.csv")
    phase_one = [float(r["lr"]) for r in rows if int(r["step"]) <= 8]
    assert phase_one == sorted(phase_one, reverse=True) and phase_one[-1] < 1e-3  # annealed
    assert {float(r["lr"]) for r in rows if int(r["step"]) > 8} == {3e-4}
    assert [float(r["lr"]) for r in _rows(out / "metrics.csv")] == [phase_one[-1], 3e-4]


def test_tensorboard_events_hold_steps_epochs_config_and_final_figures(tb_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, out, result = tb_run
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = acc.Scalars("train/loss")
    rows = _rows(out / "steps.csv")
    assert [e.step for e in loss] == [int(r["step"]) for r in rows]
    assert [e.value for e in loss] == pytest.approx([float(r["loss"]) for r in rows],
                                                    rel=1e-5)
    assert [e.step for e in acc.Scalars("epoch/target_train_acc")] == [8, 16]
    final = acc.Scalars("final/test_accuracy")
    assert final[-1].value == pytest.approx(result.test_accuracy)
    assert "curves" in tags["images"]
    assert "config/text_summary" in tags["tensors"]
    assert '"protocol": "tst_tt"' in acc.Tensors("config/text_summary")[0] \
        .tensor_proto.string_val[0].decode()
    assert "hparams" in acc.PluginTagToContent("hparams") or \
        acc.PluginTagToContent("hparams")


def test_mlflow_store_holds_params_metrics_and_artifacts(data_root, cache_dir, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    cfg = _cfg(data_root, cache_dir, logger="mlflow", epochs=1)
    result = train(cfg, out, log=lambda s: None)
    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("dalab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["protocol"] == "tst_tt"
    assert run.data.params["batch_size"] == "32"
    assert run.data.params["tracking_uri"] == "None"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    rows = _rows(out / "steps.csv")
    assert sorted(m.step for m in history) == [int(r["step"]) for r in rows]
    assert run.data.metrics["final/test_accuracy"] == pytest.approx(result.test_accuracy)
    assert "epoch/target_train_acc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "steps.csv", "result.json", "config.json"} <= artifacts
