"""The method interface: a method owns its model, extra modules, teachers and optimisers.

The training loop builds ``method = METHODS[name](model, cfg)`` and calls
``figures = method.update(xs, ys, xt, progress, lr)`` once per batch; nothing else in
the loop knows which method runs. ``update`` returns detached figures ("loss",
"class_loss", "train_acc" and method-specific ones) that the loop reads from the device
only at its logging interval.

A method whose objective is one loss minimised by one optimiser implements
:meth:`Method.losses` alone; the default :meth:`Method.update` does the step. Methods with
several steps per batch (MCD), a discriminator with its own optimiser (VADA, ADDA) or a
teacher (mean teacher, DIRT-T) override ``update`` and use :meth:`Method.step`.

``method.state_dict()`` holds everything a resumed run needs besides the optimisers
(model, extra modules, teachers, the weight average and schedule buffers);
``method.optimizers`` maps a name to each optimiser.

With ``cfg.weight_ema`` the method also keeps ``average``, an exponential moving average
of the model's weights that the loop updates after every step
(:meth:`Method.update_average`); ``method.evaluated`` -- the average, else the model --
is what the loop scores, selects and saves (Polyak averaging: the trained weights keep
moving with a constant learning rate; their average sits nearer the middle of the
region they move in).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalab.methods.common import accuracy, ema_update, features_st, frozen_copy
from dalab.methods.optim import make_optimizer, set_lr, trainable
from dalab.models import Classifier


class Method(nn.Module):
    """Base class of every adaptation method.

    Parameters
    ----------
    model
        The network being trained; evaluation and checkpoints use it.
    cfg
        The run's :class:`dalab.training.Config` (read for the optimiser and the
        method's own ``<method>_*`` settings).

    Subclasses set extra modules in ``__init__`` before calling
    :meth:`build_optimizers` (the default gives one optimiser, ``"main"``, over every
    trainable parameter).
    """

    uses_target = True  # False: the method never looks at target images
    # True: losses() draws random numbers (dropout, random augmentation, VAT), so a
    # packed step could not repeat a lone run's draws (dalab.training.stacked)
    random_losses = False
    # True: the method transforms its input images (augmentations, input perturbations),
    # so it cannot train on cached backbone features (dalab.training.frozen)
    transforms_inputs = False

    def __init__(self, model: Classifier, cfg):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.average = None
        if cfg.weight_ema:
            self.average = frozen_copy(model)
            self.register_buffer("average_steps", torch.zeros((), dtype=torch.int64))

    @property
    def evaluated(self) -> Classifier:
        """The model that is scored, selected and saved: the weight average, if kept."""
        return self.average if self.average is not None else self.model

    @torch.no_grad()
    def update_average(self) -> None:
        """One step of the weight average (after each training step; no-op without one).
        The decay is ``min(weight_ema, (1 + t) / (10 + t))`` at step ``t``, so the first
        steps do not leave the average near the initial weights."""
        if self.average is None:
            return
        t = self.average_steps.float()  # on the device: no synchronisation per step
        decay = ((1 + t) / (10 + t)).clamp(max=self.cfg.weight_ema)
        ema_update(self.average, self.model, decay)
        self.average_steps += 1

    # -- optimisers ----------------------------------------------------------------------
    def build_optimizers(self, groups: dict[str, list[nn.Parameter]] | None = None) -> None:
        """Build ``self.optimizers`` from the Config: one optimiser per named group of
        parameters (default: ``{"main": every trainable parameter}``)."""
        if groups is None:
            groups = {"main": trainable(self)}
        self.optimizers = {name: make_optimizer(params, self.cfg)
                           for name, params in groups.items()}

    def autocast(self, x: Tensor):
        """bf16 autocast on ``x``'s device when ``cfg.amp``; a no-op context otherwise
        (without autocast's cast cache while a CUDA graph is being captured, as CUDA
        graphs need)."""
        if not getattr(self.cfg, "amp", False):
            return contextlib.nullcontext()
        capturing = x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        return torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=not capturing)

    def step(self, names: str | tuple[str, ...], loss: Tensor, lr: float) -> None:
        """One step of the optimiser(s) ``names`` on ``loss``: set lr, zero their
        gradients, backward, step each."""
        optimizers = [self.optimizers[n] for n in ((names,) if isinstance(names, str)
                                                    else names)]
        for opt in optimizers:
            set_lr(opt, lr)
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    # -- one training step -----------------------------------------------------------------
    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float
               ) -> dict[str, Tensor]:
        """``{"loss": minimised, ...figures}`` on one batch; see the subclasses."""
        raise NotImplementedError(f"{type(self).__name__} overrides update() instead")

    def forward(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float
                ) -> dict[str, Tensor]:
        """:meth:`losses` (so that ``torch.func.functional_call`` runs them with other
        parameters: the packed step, :mod:`dalab.training.stacked`)."""
        return self.losses(xs, ys, xt, progress)

    def update(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float,
               lr: float) -> dict[str, Tensor]:
        """One training step on source images ``xs`` (N, C, H, W), labels ``ys`` (N,)
        and target images ``xt`` (M, C', H, W) (``None`` without a target); returns
        detached figures."""
        with self.autocast(xs):
            out = self.losses(xs, ys, xt, progress)
        self.step("main", out["loss"], lr)
        return detached(out)

    def grl_weight(self, progress: float) -> float:
        """The adaptation weight at ``progress`` (logged as ``lambda``); 0 without one."""
        return 0.0

    @classmethod
    def uses_grl_lambda(cls, cfg) -> bool:
        """Whether ``cfg.grl_lambda`` (and its schedule) weighs this method's gradient
        reversal under ``cfg`` (what a run summary shows as ``lambda``)."""
        return False

    def step_lr(self, progress: float, lr: float) -> float:
        """The learning rate the step at ``progress`` trains with (logged as ``lr``):
        the run's schedule ``lr`` unless the method sets its own."""
        return lr


def detached(figures: dict[str, Tensor]) -> dict[str, Tensor]:
    """The figures with every tensor detached from the graph."""
    return {k: v.detach() for k, v in figures.items()}


class Aligned(Method):
    """A method whose loss is source cross-entropy plus a term on both domains' features
    and logits: ``CE(classify(f_s), ys) + align(f_s, f_t, logits_s, logits_t)``.

    Subclasses implement :meth:`align`, returning the weighted term and its figures.
    Features come from :func:`dalab.methods.common.features_st` (each domain with its
    own batch-norm statistics).
    """

    def __init__(self, model: Classifier, cfg):
        super().__init__(model, cfg)
        self.build_optimizers()

    def align(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def losses(self, xs: Tensor, ys: Tensor, xt: Tensor | None, progress: float
               ) -> dict[str, Tensor]:
        f_s, f_t = features_st(self.model, xs, xt, self.cfg.joint_bn)
        logits_s, logits_t = self.model.classify(f_s), self.model.classify(f_t)
        cls = F.cross_entropy(logits_s, ys)
        term, figures = self.align(f_s, f_t, logits_s, logits_t, progress)
        return {"loss": cls + term, "class_loss": cls, "train_acc": accuracy(logits_s, ys),
                **figures}
