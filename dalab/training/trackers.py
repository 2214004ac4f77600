"""Experiment trackers: TensorBoard and MLflow (``--logger tensorboard|mlflow``).

Both receive the same things: the config as hyper-parameters at the start, step rows
(``train/<figure>``) and epoch rows (``epoch/<figure>``) as they come, and at the end the
final figures (``final/<field>``), ``curves.png`` and the run folder's small files.
By default they write under the run folder: TensorBoard event files in
``tensorboard/``; MLflow a local SQLite store ``mlflow.db`` with artifacts in
``mlartifacts/`` (MLflow 3 no longer writes plain ``mlruns/`` file stores).
``--tracking-uri`` names another TensorBoard log folder or MLflow tracking URI.
The libraries are optional extras (``pip install 'dalab[tensorboard]'`` or
``'dalab[mlflow]'``), imported only when asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

from dalab.errors import ConfigError

ARTIFACTS = ("curves.png", "config.json", "metrics.csv", "steps.csv", "result.json",
             "summary.txt")
EXPERIMENT = "dalab"  # the MLflow experiment runs go to


def hyperparameters(cfg) -> dict[str, str | int | float | bool]:
    """The config as flat scalar values (None as the string "None")."""
    return {k: (v if isinstance(v, (str, int, float, bool)) else str(v))
            for k, v in cfg.to_dict().items()}


def run_name(cfg, out: Path | None) -> str:
    return Path(out).name if out is not None else f"{cfg.protocol}-seed{cfg.seed}"


class TensorBoardTracker:
    """Event files for TensorBoard, in ``out/tensorboard`` or ``cfg.tracking_uri``."""

    def __init__(self, cfg, out: Path | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError("logger: tensorboard is not installed; pip install "
                              "'dalab[tensorboard]'") from err
        self.log_dir = Path(cfg.tracking_uri or Path(_need(out, "tensorboard")) /
                            "tensorboard")
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.writer.add_text("config", "```\n" + json.dumps(cfg.to_dict(), indent=2)
                             + "\n```", 0)

    def log_metrics(self, values: dict, step: int) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def finish(self, cfg, final: dict, out: Path | None) -> None:
        self.writer.add_hparams(hyperparameters(cfg), final, run_name=".")
        curves = Path(out) / "curves.png" if out is not None else None
        if curves is not None and curves.is_file():
            import matplotlib.image
            self.writer.add_image("curves", matplotlib.image.imread(curves)[..., :3],
                                  dataformats="HWC")
        self.writer.close()


class MLflowTracker:
    """An MLflow run in experiment ``dalab``; by default a SQLite store ``out/mlflow.db``
    with artifacts in ``out/mlartifacts``."""

    def __init__(self, cfg, out: Path | None) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise ConfigError("logger: mlflow is not installed; pip install "
                              "'dalab[mlflow]'") from err
        folder = None if cfg.tracking_uri else Path(_need(out, "mlflow")).resolve()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.uri = cfg.tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(EXPERIMENT)
        experiment = (found.experiment_id if found is not None else
                      self.client.create_experiment(
                          EXPERIMENT, artifact_location=None if folder is None
                          else (folder / "mlartifacts").as_uri()))
        self.run_id = self.client.create_run(experiment, run_name=run_name(cfg, out)) \
            .info.run_id
        params = [Param(k, str(v)) for k, v in hyperparameters(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_metrics(self, values: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(step)) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def finish(self, cfg, final: dict, out: Path | None) -> None:
        if out is not None:
            for name in ARTIFACTS:
                if (Path(out) / name).is_file():
                    self.client.log_artifact(self.run_id, str(Path(out) / name))
        self.client.set_terminated(self.run_id)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


def _need(out: Path | None, name: str) -> Path:
    if out is None:
        raise ConfigError(f"logger: {name} needs a run folder (--out) or --tracking-uri")
    return Path(out)


def open_tracker(cfg, out: Path | None):
    """The tracker ``cfg.logger`` names, or None for ``"none"``."""
    if cfg.logger == "none":
        return None
    return TRACKERS[cfg.logger](cfg, out)
