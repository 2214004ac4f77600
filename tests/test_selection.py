"""Model selection: each rule keeps its best epoch's model; --select with every rule."""

from __future__ import annotations

import json

import pytest
import torch

from dalab.data import Split
from dalab.errors import ConfigError
from dalab.evaluation.validators import VALIDATORS
from dalab.training import load_run, make_config, train
from dalab.training import loop as loop_module
from dalab.training import selection as selection_module
from dalab.training.config import CHOICES, ORACLES, PROTOCOLS
from dalab.training.domains import load_sets
from dalab.training.runfolder import read_csv_rows
from dalab.training.selection import RULES, Selector


def test_rules_are_none_the_accuracies_and_every_validator():
    assert set(RULES) == {"none", "source-val", *ORACLES, *VALIDATORS}
    assert ORACLES == ("target-val", "target-test")
    assert CHOICES["select"] == RULES
    with pytest.raises(ConfigError, match="early_stopping.*source-val or target-val"):
        make_config(select="entropy", early_stopping=True)


def test_target_test_is_flagged_in_every_protocol_target_val_in_adaptation():
    for protocol in PROTOCOLS:
        assert make_config(select="target-test", protocol=protocol).oracle_selection
        assert make_config(select="target-val", protocol=protocol).oracle_selection == (
            protocol in ("ts_tt", "tst_tt"))


class Scalar(torch.nn.Module):
    """A one-weight model whose prediction is class 1 when its weight is positive."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), self.w.expand(len(x))], 1)


def test_selector_keeps_one_state_per_chosen_epoch_and_restores_the_selected(monkeypatch):
    # scripted validator scores: entropy peaks at epoch 2, im at epoch 1, the rest at 3
    script = iter([{"entropy": 0.1, "im": 0.9}, {"entropy": 0.5, "im": 0.2},
                   {"entropy": 0.3, "im": 0.1}])
    monkeypatch.setattr(selection_module, "score_validators", lambda *a, **k: next(script))
    model = Scalar()
    sel = Selector("entropy", torch.zeros(4), torch.zeros(4), None,
                   {"target-val": "target_val_acc"})
    weights = [-1.0, 2.0, -3.0]  # epoch 2's model predicts class 1, the others class 0
    for epoch, w in enumerate(weights, 1):
        model.w.data.fill_(w)
        row = sel.update(model, {"epoch": epoch, "step": 10 * epoch,
                                 "target_val_acc": [0.2, 0.1, 0.7][epoch - 1]})
        assert set(row) == {"score_entropy", "score_im"}
    assert sorted(sel.states) == [1, 2, 3]  # im, entropy, target-val (none: the live model)
    state = sel.state_dict()
    json.dumps(state["meta"])  # JSON-able, and a flat tensor dict beside it
    assert all(isinstance(v, torch.Tensor) for v in state["tensors"].values())
    assert sorted(state["tensors"]) == ["1/w", "2/w", "3/w"]
    restored = Selector("entropy", torch.zeros(4), torch.zeros(4), None, {})
    restored.load_state_dict(state)
    test = Split("t/test", torch.zeros(10, 1), torch.tensor([1] * 6 + [0] * 4))
    records = restored.finish(model, test, batch_size=4, device="cpu")
    assert model.w.item() == 2.0  # entropy's epoch
    assert {r: (v["epoch"], v["target_test_accuracy"], v["oracle"])
            for r, v in records.items()} == {
        "none": (3, 0.4, False), "target-val": (3, 0.4, True),
        "entropy": (2, 0.6, False), "im": (1, 0.4, False)}
    assert list(records) == ["none", "target-val", "entropy", "im"]  # RULES order


@pytest.fixture(scope="module")
def tiny_sets(data_root, cache_dir):
    """The data of a tiny run, loaded once for every --select run below."""
    cfg = _cfg(data_root, cache_dir, select="source-val")
    return load_sets(cfg)


def _cfg(data_root, cache_dir, **kw):
    values = dict(max_train=256, max_eval=200, threads=1, device="cpu", epochs=2,
                  lr=0.05, lr_schedule="constant", data_root=str(data_root),
                  cache_dir=str(cache_dir))
    values.update(kw)
    return make_config("quick", **values)


@pytest.mark.parametrize("rule", RULES)
def test_select_each_rule_keeps_its_epoch(rule, tiny_sets, data_root, cache_dir, tmp_path,
                                          monkeypatch):
    full = rule in ("none", "target-test")  # no validation split: the sets differ
    if full:
        monkeypatch.setattr(loop_module, "load_sets", load_sets)
    else:
        monkeypatch.setattr(loop_module, "load_sets", lambda cfg: tiny_sets)
    cfg = _cfg(data_root, cache_dir, select=rule)
    result = train(cfg, tmp_path / "run", log=lambda s: None)
    records = result.validators
    # target-test is scored when selected; source-val, dev and target-val need val splits
    expected = ({"none", rule, *VALIDATORS} - {"dev"} if full
                else set(RULES) - {"target-test"})
    assert set(records) == expected
    assert [r for r, v in records.items() if v["oracle"]] == (
        [] if rule == "none" else ["target-test"] if full else ["target-val"])
    chosen = records[rule]
    assert result.best_epoch == chosen["epoch"]
    assert result.target_test_accuracy == pytest.approx(chosen["target_test_accuracy"])
    assert result.oracle_selection == (rule in ORACLES)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["validators"] == json.loads(json.dumps(records))
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"score_{v}" for v in expected & set(VALIDATORS)} <= set(header)
    if rule == "target-test":  # the epoch of best target test accuracy, as scored each epoch
        rows = read_csv_rows(tmp_path / "run" / "metrics.csv")
        per_epoch = [r["target_test_acc"] for r in rows]
        assert chosen["target_test_accuracy"] == pytest.approx(max(per_epoch))
        assert chosen["epoch"] == per_epoch.index(max(per_epoch)) + 1
    if rule == "classami":  # the saved weights are the chosen epoch's
        model, _, _ = load_run(tmp_path / "run")
        test = tiny_sets.evals["target_test"]
        from dalab.evaluation import accuracy
        assert accuracy(model, test.images, test.labels) == pytest.approx(
            chosen["target_test_accuracy"])


def test_selector_without_target_images_or_test_labels():
    model = Scalar()
    sel = Selector("source-val", None, torch.zeros(4), None,
                   {"source-val": "source_val_acc"})
    for epoch, acc in enumerate([0.5, 0.9, 0.7], 1):
        model.w.data.fill_(float(epoch))
        assert sel.update(model, {"epoch": epoch, "step": epoch,
                                  "source_val_acc": acc}) == {}
    records = sel.finish(model, None)
    assert model.w.item() == 2.0
    assert records == {
        "none": {"epoch": 3, "step": 3, "score": 3.0, "target_test_accuracy": None,
                 "oracle": False},
        "source-val": {"epoch": 2, "step": 2, "score": 0.9, "target_test_accuracy": None,
                       "oracle": False}}


@pytest.mark.parametrize("select", ["none", "source-val", "bnm"])
def test_validators_off_scores_only_what_selection_needs(select, tiny_sets, data_root,
                                                          cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loop_module, "load_sets", lambda cfg: tiny_sets)
    cfg = _cfg(data_root, cache_dir, select=select, validators=False)
    result = train(cfg, tmp_path / "run", log=lambda s: None)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    scored = {h for h in header if h.startswith("score_")}
    if select == "bnm":  # a validator chooses: every validator is scored
        assert "bnm" in result.validators and "score_bnm" in scored
    else:
        assert not scored and not set(result.validators) & set(VALIDATORS)
        assert select in result.validators
