"""dalab from Python (notebooks, scripts): train, evaluate, read data.

Imported lazily by ``dalab/__init__.py``: ``import dalab`` stays light, and
``dalab.train`` pulls torch in on first use. See ``docs/python.md``.
"""

from __future__ import annotations

from pathlib import Path


def make(preset: str | None = None, config: str | Path | dict | None = None,
         **overrides):
    """A :class:`~dalab.training.config.Config`: defaults -> preset (``preset``, else the
    config's) -> ``config`` (a TOML/JSON file, a run folder's ``config.json``, or a
    dict) -> ``overrides`` (the same names as the Config fields)."""
    from dalab.training.configfile import merge, read_config_file

    if config is None:
        values = {}
    elif isinstance(config, dict):
        values = dict(config.get("config", config))
    else:
        values = read_config_file(config)
    return merge(values, preset, overrides)


def train(preset: str | None = None, *, config: str | Path | dict | None = None,
          out: str | Path | None = None, quiet: bool = False, **overrides):
    """Train one run and return its :class:`~dalab.training.loop.Result`.

    Parameters
    ----------
    preset
        ``"paper"``, ``"quick"``, ``"speedrun"`` or ``"seed"`` (see ``docs/training.md``).
    config
        A config file (TOML or JSON; a run folder's ``config.json`` reruns that run) or a
        dict of Config fields.
    out
        Run folder to write (``config.json``, ``metrics.csv``, ``steps.csv``,
        ``model.safetensors``, ``result.json``...); None keeps nothing on disk.
    quiet
        No progress bar or messages.
    **overrides
        Config fields, e.g. ``protocol="tst_tt"``, ``epochs=2``, ``grl_lambda=0.5``.

    Returns
    -------
    Result
        ``test_accuracy``, ``source_test_accuracy``, ``target_test_accuracy``,
        ``seconds`` and the settings; ``.to_dict()`` gives a plain dict.

    Examples
    --------
    >>> result = dalab.train("quick", protocol="tst_tt", out="runs/dann")  # doctest: +SKIP
    >>> result.test_accuracy  # doctest: +SKIP
    """
    from dalab import progress
    from dalab.training import train as train_run

    cfg = make(preset, config, **overrides)
    before = progress.verbosity()
    if quiet:
        progress.set_verbosity(progress.QUIET)
    try:
        return train_run(cfg, Path(out) if out is not None else None)
    finally:
        progress.set_verbosity(before)


def experiment(preset: str | None = "quick", *, out: str | Path,
               config: str | Path | dict | None = None, quiet: bool = False,
               **overrides) -> dict[str, dict]:
    """The four protocols of one setting into ``out`` (``dalab experiment``).

    Returns each protocol's result as a dict; ``out/summary.md`` holds the table and
    the share of the source-to-oracle gap that adaptation closed.
    """
    from dalab import progress
    from dalab.training.experiment import run_experiment

    cfg = make(preset, config, **overrides)
    before = progress.verbosity()
    if quiet:
        progress.set_verbosity(progress.QUIET)
    try:
        return run_experiment(cfg, Path(out))
    finally:
        progress.set_verbosity(before)


def evaluate(model: str | Path, domain: str = "mnistm", split: str = "test", *,
             data_root: str | Path | None = None, cache_dir: str | Path | None = None,
             device: str = "auto", batch_size: int = 2048) -> dict:
    """Score a trained model on one split of a domain (``dalab eval --domain``).

    Parameters
    ----------
    model
        A run folder or its ``model.safetensors``.
    domain
        A domain spec (``docs/data.md``): ``"mnist"``, ``"mnistm"``,
        ``"mnistm:theta=0.5,mode=gray"``, ``"folder:PATH"``, ...
    split
        ``"train"``, ``"val"`` or ``"test"``.
    data_root, cache_dir
        Where data are read and generated sets cached (default: ``$DALAB_DATA``,
        ``$DALAB_CACHE``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    dict
        ``accuracy``, ``n``, ``per_class`` accuracies and ``confusion`` counts
        (``confusion[true][predicted]``).
    """
    from dalab.data import load_domain
    from dalab.errors import DataError
    from dalab.evaluation import evaluate as score
    from dalab.training.loop import resolve_device
    from dalab.training.runfolder import load_model

    dev = resolve_device(device)
    net, _ = load_model(model, dev)
    data = load_domain(domain, data_root, cache_dir).split(split)
    if data.labels is None:
        raise DataError(f"{data.name}: the domain has no labels to score against")
    return score(net, data.images, data.labels, batch_size=batch_size, device=dev)


def read_run(run: str | Path) -> dict:
    """A finished run folder as plain data: ``config``, ``result``, ``metrics`` (one dict
    per epoch) and ``steps`` (one dict per logging interval)."""
    from dalab.training.configfile import read_config_file
    from dalab.training.runfolder import read_metrics, read_result, read_steps

    run = Path(run)
    return {"config": read_config_file(run / "config.json"), "result": read_result(run),
            "metrics": read_metrics(run), "steps": read_steps(run)}
