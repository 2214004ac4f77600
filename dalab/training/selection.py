"""Model selection: the epoch every selection rule prefers, and the patience rule.

Each epoch, :class:`Selector` scores the model with every rule it can compute (see
:data:`RULES`; greater is better for all of them) and keeps, in memory, the model
state of each rule's best epoch so far (one copy per distinct epoch). At the end it
scores each kept state on the target test set (through :mod:`dalab.evaluation`),
puts the state of the rule chosen by ``--select`` into the model, and returns a
record of every rule's choice beside the oracles' (:data:`ORACLES`, never used for the
kept model unless asked for): ``target-val``, labelled target validation data, and,
scored only when selected, ``target-test``, the target test set itself (the epoch
tllib's example scripts report).

The patience rule (:class:`EarlyStopping`) is the original code's (Theano tutorial
style): every validation that beats the best error remembers the model; one that
beats it by more than a factor (``new < threshold * best``) extends patience to
``step * increase``; training stops once ``step >= patience``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from dalab.evaluation import count_correct
from dalab.evaluation.validators import VALIDATORS, score_validators
from dalab.training.config import CHOICES, ORACLES, PROTOCOLS

RULES = CHOICES["select"]  # none | source-val | the oracles | every validator
VALIDATOR_IMAGES = 2000  # images per domain the unsupervised validators score each epoch


@dataclass
class EarlyStopping:
    """Tracks the best validation error and the patience budget (both in steps)."""

    patience: int = 10000  # steps
    increase: float = 2.0
    threshold: float = 0.995
    best_error: float = math.inf
    best_epoch: int = -1
    best_step: int = -1

    def update(self, error: float, epoch: int, step: int) -> bool:
        """Record the validation error after ``step`` steps; return True on a new best."""
        if error >= self.best_error:
            return False
        if error < self.best_error * self.threshold:
            self.patience = max(self.patience, int(step * self.increase))
        self.best_error, self.best_epoch, self.best_step = error, epoch, step
        return True

    def should_stop(self, step: int) -> bool:
        return step >= self.patience


class Selector:
    """Every rule's best epoch so far, the model states they point to, and patience.

    Parameters
    ----------
    select
        The rule whose choice becomes the run's model (``cfg.select``).
    target
        Unlabelled target training images scored by the validators (None: no
        validator is computed).
    source_fit
        Labelled-domain training images (the source side of DEV's domain classifier).
    source_val
        ``(images, labels)`` of held-out labelled-domain validation images, or None
        (no validation split: ``source-val``, ``dev`` and the oracle are not computed).
    accuracy_keys
        ``{"source-val": row key, "target-val": row key}`` of the per-epoch validation
        accuracies the loop already computes, where a split exists.
    stopper
        Patience on the selected rule's accuracy (early stopping), or None.
    cuda_graphs
        On CUDA, the validators' forwards replay captured graphs
        (:mod:`dalab.evaluation.fixed`).
    """

    def __init__(self, select: str, target: Tensor | None, source_fit: Tensor,
                 source_val: tuple[Tensor, Tensor] | None, accuracy_keys: dict[str, str],
                 stopper: EarlyStopping | None = None, batch_size: int = 2048,
                 cuda_graphs: bool = False):
        self.select, self.accuracy_keys, self.stopper = select, accuracy_keys, stopper
        self.target, self.source_fit, self.source_val = target, source_fit, source_val
        self.batch_size, self.cuda_graphs = batch_size, cuda_graphs
        self.best: dict[str, dict] = {}  # rule -> {"epoch", "step", "score"}
        self.states: dict[int, dict[str, Tensor]] = {}  # epoch -> model state

    @classmethod
    def for_run(cls, cfg, sets) -> "Selector":
        """The selector of one ``train`` run: the first :data:`VALIDATOR_IMAGES` images
        of each set it needs (target *training* images only, never target labels)."""
        n = VALIDATOR_IMAGES
        target = sets.unlabelled
        if target is None and "target_train" in sets.evals:  # source-only protocols
            target = sets.evals["target_train"].images
        target = None if target is None else sets.eval_view(target[:n])
        if not cfg.validators and cfg.select not in VALIDATORS:
            target = None  # no validator scores (a speed run's choice)
        labelled_val = "target_val" if PROTOCOLS[cfg.protocol][1] == "target" else "source_val"
        keys = {rule: f"{name}_acc" for rule, name in
                (("source-val", labelled_val), ("target-val", "target_val"),
                 ("target-test", "target_test")) if name in sets.evals
                and (rule != "target-test" or cfg.select == rule)}
        val = sets.evals.get(labelled_val)
        stopper = (EarlyStopping(cfg.patience, cfg.patience_increase,
                                 cfg.improvement_threshold) if cfg.early_stopping else None)
        return cls(cfg.select, target, sets.eval_view(sets.labelled.images[:n]),
                   None if val is None else (val.images[:n], val.labels[:n]), keys, stopper,
                   cfg.eval_batch_size, cfg.cuda_graphs)

    # -- every epoch -----------------------------------------------------------------------
    def update(self, model: torch.nn.Module, row: dict) -> dict[str, float]:
        """Score ``model`` after epoch ``row["epoch"]``; keep its state for every rule it
        leads; return the validator scores as ``score_<name>`` entries for the row."""
        epoch, step = row["epoch"], row["step"]
        scores = ({} if self.target is None else
                  score_validators(model, self.target, self.source_fit, self.source_val,
                                   self.batch_size, cuda_graphs=self.cuda_graphs))
        scores.update({rule: row[key] for rule, key in self.accuracy_keys.items()})
        scores["none"] = float(epoch)  # the last model
        for rule, score in scores.items():
            if math.isnan(score):  # a diverged model never leads
                continue
            if rule not in self.best or score > self.best[rule]["score"]:
                self.best[rule] = {"epoch": epoch, "step": step, "score": score}
        if self.stopper is not None and not math.isnan(scores.get(self.select, math.nan)):
            self.stopper.update(1.0 - scores[self.select], epoch, step)
        wanted = {b["epoch"] for rule, b in self.best.items() if rule != "none"}
        if epoch in wanted:
            self.states[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.states = {e: s for e, s in self.states.items() if e in wanted}
        return {f"score_{k}": v for k, v in scores.items() if k in VALIDATORS}

    def should_stop(self, step: int) -> bool:
        """True when early stopping is on and patience has run out."""
        return self.stopper is not None and self.stopper.should_stop(step)

    # -- at the end -------------------------------------------------------------------------
    def finish(self, model: torch.nn.Module, target_test, **eval_kw) -> dict:
        """Put the selected rule's model into ``model``; return every rule's record.

        Each record: ``epoch`` chosen, ``score`` there, ``target_test_accuracy`` of that
        epoch's model, ``oracle`` (True for ``target-val``). Every distinct chosen
        epoch is scored once on ``target_test`` (a labelled Split; None for a target
        without labels: the accuracies are then None).
        """
        last = {k: v.detach().clone() for k, v in model.state_dict().items()}
        last_epoch = self.best["none"]["epoch"]
        states = {**self.states, last_epoch: last}
        accuracy = {}
        for epoch, state in sorted(states.items()):
            if target_test is None:
                accuracy[epoch] = None
                continue
            model.load_state_dict(state)
            accuracy[epoch] = count_correct(model, target_test.images, target_test.labels,
                                            **eval_kw).item() / max(1, len(target_test))
        model.load_state_dict(states[self.chosen()["epoch"]])
        return {rule: {**b, "target_test_accuracy": accuracy[b["epoch"]],
                       "oracle": rule in ORACLES}
                for rule, b in sorted(self.best.items(), key=lambda kv: RULES.index(kv[0]))}

    def chosen(self) -> dict:
        """The selected rule's best so far, ``{"epoch", "step", "score"}`` (the last
        epoch's when the rule never gave a finite score)."""
        return self.best.get(self.select, self.best["none"])

    # -- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"meta": JSON-able, "tensors": flat {"<epoch>/<param>": Tensor}}``: the rules'
        bests and the patience state, and the kept model states (safetensors-ready)."""
        return {"meta": {"best": {k: dict(v) for k, v in self.best.items()},
                         "stopper": None if self.stopper is None else asdict(self.stopper)},
                "tensors": {f"{e}/{k}": v for e, s in self.states.items()
                            for k, v in s.items()}}

    def load_state_dict(self, state: dict) -> None:
        meta = state["meta"]
        self.best = {k: dict(v) for k, v in meta["best"].items()}
        if self.stopper is not None and meta.get("stopper"):
            self.stopper = EarlyStopping(**meta["stopper"])
        self.states = split_states(state["tensors"])


def split_states(tensors: dict[str, Tensor]) -> dict[int, dict[str, Tensor]]:
    """Kept model states flattened by :meth:`Selector.state_dict`,
    ``{"<epoch>/<param>": Tensor}``, as ``{epoch: {param: Tensor}}``."""
    states: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        epoch, name = key.split("/", 1)
        states.setdefault(int(epoch), {})[name] = value
    return states
