"""Several runs of one network as one: stacked parameters, optimiser state and step.

A :class:`Stack` puts the parameters and buffers of ``M`` members' methods (same
modules, same shapes) into tensors with a leading member dimension (the trainable
parameters all in one ``(M, P)`` tensor), and makes each member's own tensors views of
its slice: a member's model still evaluates, saves and checkpoints as a lone run's
does, while the stack trains every member at once. :class:`StackedOptimizer` is SGD or
Adam over that ``(M, P)`` tensor with one learning rate per member (a device tensor);
its state is linked, slice by slice, into each member's own ``torch.optim`` optimiser,
so checkpoints hold exactly what a lone run's hold. :class:`StackedStep` is one
training step of all members: gather by index from the device-resident data,
augmentation, the method's losses (``functional_call`` over the stacked tensors, under
``torch.func.vmap`` on CUDA, member by member on the CPU), backward and the optimiser
update.

Its shapes never change and its schedules (learning rates, progress) live in device
tensors, so on CUDA the whole step can be captured as one CUDA graph
(:mod:`dalab.training.graph`); with one member it is the captured step of a lone run.

What packs (:func:`pack_problem`): a method whose ``update`` is the default one step of
one optimiser on ``losses()`` and whose losses draw no random numbers (source only,
DANN, DAN, JAN, CORAL, MCC, BNM), a network without dropout, no weight average, and
SGD (no dampening or Nesterov) or Adam. Config values the losses read as numbers (λ,
the methods' weights) may differ between members: each member's values reach the
losses as tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.data.augment import augment_stacked
from dalab.errors import ConfigError
from dalab.methods import Method

# Numeric Config fields that methods' losses read and that may differ within a pack
VARYING = ("grl_lambda", "dan_weight", "jan_weight", "coral_weight", "mcc_weight",
           "mcc_temperature", "bnm_weight")
OPTIMIZERS = ("sgd", "adam")


class PackError(ConfigError):
    """These runs cannot be trained as one stack (the caller runs them one by one)."""


def pack_problem(cfg) -> str | None:
    """Why runs of ``cfg`` cannot be stacked, or None when they can."""
    from dalab.methods import METHODS

    cls = METHODS[cfg.trained_method]
    if cls.update is not Method.update:
        return f"{cfg.trained_method} has its own update (several steps, optimisers or a teacher)"
    if cls.random_losses:
        return f"{cfg.trained_method} draws random numbers in its losses"
    if cfg.dropout:
        return "dropout draws random numbers"
    if cfg.weight_ema:
        return "weight_ema keeps a second model"
    if cfg.optimizer not in OPTIMIZERS:
        return f"optimizer {cfg.optimizer} (packs use {' or '.join(OPTIMIZERS)})"
    if cfg.compile:
        return "compile"
    if cfg.pretrained or cfg.resize or cfg.nesterov:
        return "photo runs (pretrained backbones, crops, Nesterov) run one at a time"
    return None


# (device type, dtype) where torch's batch norm cannot run under vmap
_NOT_UNDER_VMAP: set[tuple[str, torch.dtype]] = set()


def batch_norm_in_vmap(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                       weight: Tensor | None = None, bias: Tensor | None = None,
                       training: bool = False, momentum: float = 0.1, eps: float = 1e-5
                       ) -> Tensor:
    """``F.batch_norm`` for members under ``vmap``. ``F.batch_norm`` asks a batched tensor
    for its memory format on CUDA (choosing cuDNN), which ``vmap`` does not support;
    ``torch.native_batch_norm`` goes straight to its batching rule (the members fold
    into the channels: one fused kernel). Where that fails too, the formula written out
    in tensor ops (:func:`batch_norm_by_hand`)."""
    where = (x.device.type, x.dtype)
    if where not in _NOT_UNDER_VMAP:
        try:
            return torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                           training, momentum, eps)[0]
        except RuntimeError:  # refused at dispatch, before any work
            _NOT_UNDER_VMAP.add(where)
    return batch_norm_by_hand(x, running_mean, running_var, weight, bias, training,
                              momentum, eps)


def batch_norm_by_hand(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                       weight: Tensor | None = None, bias: Tensor | None = None,
                       training: bool = False, momentum: float = 0.1, eps: float = 1e-5
                       ) -> Tensor:
    """``F.batch_norm`` written out in tensor ops (float32): same statistics and
    running-average update as torch's."""
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.float()
    if training:
        mean, var = xf.mean(dims), xf.var(dims, unbiased=False)
        if running_mean is not None:
            n = xf.numel() / xf.shape[1]
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / (n - 1)))
    else:
        mean, var = running_mean, running_var
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    if weight is not None:
        y = y * weight.view(shape) + bias.view(shape)
    return y.to(x.dtype)


@contextlib.contextmanager
def vmap_safe_batch_norm():
    """Batch-norm layers compute with :func:`batch_norm_in_vmap` inside the block (they
    call ``torch.nn.functional.batch_norm``; it is swapped back on leaving)."""
    fused = F.batch_norm
    F.batch_norm = batch_norm_in_vmap
    try:
        yield
    finally:
        F.batch_norm = fused


def _batched(template: Tensor, members: list[Tensor], where: str) -> Tensor:
    if any(t.shape != template.shape or t.dtype != template.dtype for t in members):
        raise PackError(f"pack: {where} differs in shape or type between members")
    return torch.stack([t.detach() for t in members])


class Stack:
    """The parameters and buffers of ``methods`` stacked along a new first dimension;
    each member's tensors become views of its slice (``tensor.data = stacked[i]``).

    The trainable parameters all live in one ``(M, P)`` tensor, :attr:`flat` (each
    stacked parameter a view of its columns), so that an optimiser update is a handful
    of whole-tensor operations, not a handful per parameter."""

    def __init__(self, methods: list[Method]):
        self.methods = methods
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        named = [dict(m.named_parameters()) for m in methods]
        trainable = {name: ref for name, ref in named[0].items() if ref.requires_grad}
        self.columns: dict[str, tuple[int, int]] = {}  # name -> (first, last + 1) of flat
        self.shapes = {name: (len(methods), *ref.shape) for name, ref in trainable.items()}
        self.orders = {name: (0, 2, 3, 1) for name, ref in trainable.items()
                       if ref.dim() == 4 and not ref.is_contiguous()
                       and ref.is_contiguous(memory_format=torch.channels_last)}
        at = 0
        for name, ref in trainable.items():
            self.columns[name] = (at, at + ref.numel())
            at += ref.numel()
        if not trainable or len({r.dtype for r in trainable.values()}) > 1:
            raise PackError("pack: the networks need trainable parameters of one type")
        ref = next(iter(trainable.values()))
        self.flat = torch.empty(len(methods), at, dtype=ref.dtype, device=ref.device)
        for name, ref in named[0].items():
            members = [n.get(name, ref.new_empty(0)) for n in named]
            stacked = _batched(ref, members, f"parameter {name}")
            if name in self.columns:
                view = self.view_of(name, self.flat)
                view.copy_(stacked)
                stacked = view
            stacked.requires_grad_(ref.requires_grad)
            for i, p in enumerate(members):
                p.data = stacked[i]
            self.params[name] = stacked
        named = [dict(m.named_buffers()) for m in methods]
        for name, ref in named[0].items():
            members = [n.get(name, ref.new_empty(0)) for n in named]
            stacked = _batched(ref, members, f"buffer {name}")
            for i, b in enumerate(members):
                b.data = stacked[i]
            self.buffers[name] = stacked
        self.of_member = {id(p): (name, i) for i, n in enumerate(
            dict(m.named_parameters()) for m in methods) for name, p in n.items()}

    @property
    def size(self) -> int:
        return len(self.methods)

    def view_of(self, name: str, table: Tensor) -> Tensor:
        """Parameter ``name``'s columns of a ``(M, P)`` tensor, shaped as the stacked
        parameter and laid out as the members' own (channels-last weights stay so)."""
        first, last = self.columns[name]
        shape, order = self.shapes[name], self.orders.get(name)
        if order is None:
            return table[:, first:last].view(shape)
        block = table[:, first:last].view(shape[0], *(shape[1 + d] for d in order))
        return block.permute(0, *(1 + order.index(d) for d in range(len(order))))

    def columns_of(self, name: str, stacked: Tensor) -> Tensor:
        """A stacked tensor shaped as parameter ``name`` as its ``(M, n)`` columns."""
        order = self.orders.get(name)
        if order is not None:
            stacked = stacked.permute(0, *(1 + d for d in order))
        return stacked.reshape(len(stacked), -1)


class StackedOptimizer:
    """SGD or Adam, as ``torch.optim`` computes them, over a :class:`Stack`'s trainable
    tensors with a per-member learning rate, in whole-``(M, P)`` operations on the
    stack's flat tensor; state linked into every member's optimiser ``name`` (built by
    the method from its Config), so checkpoints hold what a lone run's hold."""

    def __init__(self, stack: Stack, name: str = "main"):
        opts = [m.optimizers[name] for m in stack.methods]
        self.stack, self.opts = stack, opts
        kinds = {type(o) for o in opts}
        if len(kinds) != 1 or type(opts[0]) not in (torch.optim.SGD, torch.optim.Adam):
            raise PackError("pack: members need the same optimiser, SGD or Adam")
        self.adam = isinstance(opts[0], torch.optim.Adam)
        groups = [o.param_groups for o in opts]
        if any(len(g) != 1 for g in groups):
            raise PackError("pack: one parameter group per optimiser")
        hyper = {k: v for k, v in groups[0][0].items() if k not in ("params", "lr")}
        for g in groups[1:]:
            other = {k: v for k, v in g[0].items() if k not in ("params", "lr")}
            if other != hyper:
                raise PackError(f"pack: optimiser settings differ ({hyper} vs {other})")
        if hyper.get("maximize") or hyper.get("amsgrad") or hyper.get("nesterov") or \
                hyper.get("dampening"):
            raise PackError("pack: maximize, amsgrad, nesterov and dampening are not stacked")
        self.hyper = hyper
        names = [[stack.of_member[id(p)] for p in g[0]["params"]] for g in groups]
        if any([n for n, _ in row] != [n for n, _ in names[0]] for row in names):
            raise PackError("pack: members' optimisers hold other parameters")
        self.names = [n for n, _ in names[0]]
        if any(n not in stack.columns for n in self.names):
            raise PackError("pack: the optimiser holds a parameter that is not trainable")
        self.member_params = [g[0]["params"] for g in groups]
        self.keys = (("exp_avg", "exp_avg_sq") if self.adam else
                     ("momentum_buffer",) if hyper["momentum"] else ())
        self.state: dict[str, Tensor] | None = None  # key -> (M, P), made at the first step
        self.used: list[str] = []  # the optimiser's parameters that get gradients
        self.mask: Tensor | None = None  # (P,) 1 on the used parameters' columns
        self.zeros: dict[str, Tensor] = {}
        self.step_count = None
        if self.adam:  # one count for all (every used parameter steps every time)
            zero = torch.zeros((), dtype=torch.get_default_dtype())
            self.step_count = torch.stack([
                next((o.state[p]["step"] for p in ps if "step" in o.state.get(p, {})), zero)
                .detach().float() for o, ps in zip(opts, self.member_params)]
            ).to(stack.flat.device)

    def _link(self, used: list[str]) -> None:
        """At the first step, as ``torch.optim`` creates state (unused parameters get
        none): the members' state (zeros where a member has none yet) copied into
        ``(M, P)`` tensors, each member's entries made views of them."""
        flat = self.stack.flat
        self.used = used
        self.state = {k: torch.zeros_like(flat) for k in self.keys}
        self.mask = torch.zeros(flat.shape[1], dtype=flat.dtype, device=flat.device)
        index = {n: j for j, n in enumerate(self.names)}
        for name in used:
            first, last = self.stack.columns[name]
            self.mask[first:last] = 1
            views = {k: self.stack.view_of(name, tensors) for k, tensors in self.state.items()}
            for m, (opt, ps) in enumerate(zip(self.opts, self.member_params)):
                entry = opt.state[ps[index[name]]]
                for k in self.state:
                    view = views[k][m]
                    if k in entry:
                        view.copy_(entry[k])
                    entry[k] = view
                if self.adam:
                    entry["step"] = self.step_count[m]
        self.zeros = {n: flat.new_zeros(len(flat), last - first)  # the unused' gradients
                      for n, (first, last) in self.stack.columns.items() if n not in used}
        if not self.zeros:
            self.mask = None  # every column steps: nothing to mask

    def set_lr(self, lrs: list[float]) -> None:
        """Record each member's learning rate in its optimiser (as a lone run's step
        does), for its checkpoint."""
        for opt, lr in zip(self.opts, lrs):
            opt.param_groups[0]["lr"] = lr

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor | None], lr: Tensor) -> None:
        """One update with gradients ``grads`` (by name, stacked; None: the parameter
        was not used, and is left alone as torch.optim does) and learning rates ``lr``
        (M,)."""
        if self.state is None:
            self._link([n for n in self.names if grads.get(n) is not None])
        flat = self.stack.flat
        g = torch.cat([self.stack.columns_of(n, grads[n]) if n in self.used else
                       self.zeros[n] for n in self.stack.columns], 1)
        if self.hyper["weight_decay"]:
            g = g.add(flat, alpha=self.hyper["weight_decay"])
            if self.mask is not None:  # no decay of the unused (their gradient stays 0)
                g = g.mul_(self.mask)
        lr = lr.view(-1, 1)
        if not self.adam:
            if self.hyper["momentum"]:
                g = self.state["momentum_buffer"].mul_(self.hyper["momentum"]).add_(g)
            flat.sub_(g * lr.to(flat.dtype))
            return
        beta1, beta2 = self.hyper["betas"]
        self.step_count.add_(1)
        count = self.step_count.double()
        step_size = (lr.double() / (1 - beta1 ** count).view(-1, 1)).to(flat.dtype)
        bc2_sqrt = (1 - beta2 ** count).sqrt().to(flat.dtype).view(-1, 1)
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        flat.sub_(m * step_size / (v.sqrt() / bc2_sqrt).add_(self.hyper["eps"]))


class StackedStep:
    """One training step of every member of a :class:`Stack` (see the module docstring).

    On CUDA the members' losses run as one batched computation (``vmap``: one kernel
    per layer for all members). On the CPU they run one after another inside the step,
    each with its own convolutions (``vmap`` turns a convolution into a grouped one,
    which is slower there than the members' own); the gradients, the optimiser update
    and the figures are still the stack's.

    Parameters
    ----------
    methods, cfgs
        The members' methods (built as a lone run builds them) and Configs.
    data
        Per member ``(xs_all, ys_all, xt_all)`` on the device (``xt_all`` None without a
        target); members holding equal sets share one copy.
    augment_gens
        Per member, the generator of its augmentation draws.
    channels
        Channels the augmentation produces.
    batched
        Losses under ``vmap`` (True) or member by member (False); default: ``vmap``
        on CUDA only.
    """

    def __init__(self, methods: list[Method], cfgs: list, data: list[tuple],
                 augment_gens: list[torch.Generator], channels: int,
                 batched: bool | None = None):
        cfg = cfgs[0]
        self.stack = Stack(methods)
        self.batched = self.stack.flat.is_cuda if batched is None else batched
        self.optimizer = StackedOptimizer(self.stack)
        self.cfgs, self.gens, self.channels = cfgs, augment_gens, channels
        self.augment, self.channels_last = cfg.augment, cfg.channels_last
        self.xs, self.xs_of = _shared([d[0] for d in data])
        self.ys = torch.stack([d[1] for d in data])
        self.xt, self.xt_of = (_shared([d[2] for d in data]) if data[0][2] is not None
                               else (None, None))
        self.trainable = [n for n, p in self.stack.params.items() if p.requires_grad]
        fixed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        varying = {k: torch.tensor([float(getattr(c, k)) for c in cfgs],
                                   device=self.ys.device) for k in VARYING}
        self.base = {k: v for k, v in fixed.items() if k not in varying}
        self.scalars = varying
        self.method = methods[0]

    def _losses(self, params: dict, buffers: dict, xs: Tensor, ys: Tensor, xt, progress,
                scalars: dict) -> dict[str, Tensor]:
        """One member's losses (called under vmap): its parameters, buffers, batch and
        Config numbers stand in for the first member's."""
        own = self.method.cfg
        self.method.cfg = SimpleNamespace(**self.base, **scalars)
        try:
            with self.method.autocast(xs):
                return torch.func.functional_call(self.method, {**params, **buffers},
                                                  (xs, ys, xt, progress))
        finally:
            self.method.cfg = own

    def __call__(self, idx_s: Tensor, idx_t: Tensor | None, progress: float | Tensor,
                 lr: Tensor) -> dict[str, Tensor]:
        """One step: ``idx_s``/``idx_t`` (M, B) indices into each member's data,
        ``progress`` in [0, 1], ``lr`` (M,). Returns detached figures, each (M,)."""
        rows = torch.arange(len(self.ys), device=idx_s.device).unsqueeze(1)
        xs = self.xs[self.xs_of.unsqueeze(1), idx_s]
        ys = self.ys[rows, idx_s]
        xt = self.xt[self.xt_of.unsqueeze(1), idx_t] if self.xt is not None else None
        xs = augment_stacked(self.augment, xs, self.gens, self.channels)
        params = {k: v for k, v in self.stack.params.items()}
        if not self.batched:  # members one after another (see the class docstring)
            outs = []
            for i in range(len(xs)):
                p, b, xs_i, ys_i, xt_i = _member(i, params, self.stack.buffers, xs, ys, xt)
                if self.channels_last:  # as the loop feeds a lone run
                    xs_i, xt_i = (None if x is None else
                                  x.contiguous(memory_format=torch.channels_last)
                                  for x in (xs_i, xt_i))
                outs.append(self._losses(p, b, xs_i, ys_i, xt_i, progress,
                                         _member(i, self.scalars)[0]))
            out = {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
        else:
            in_dims = (0, 0, 0, 0, None if xt is None else 0, None, 0)
            with vmap_safe_batch_norm():
                out = torch.func.vmap(self._losses, in_dims=in_dims, randomness="error")(
                    params, self.stack.buffers, xs, ys, xt, progress, self.scalars)
        grads = torch.autograd.grad(out["loss"].sum(), [params[n] for n in self.trainable],
                                    allow_unused=True)
        self.optimizer.step(dict(zip(self.trainable, grads)), lr)
        return {k: v.detach() for k, v in out.items()}


def _member(i: int, *stacked):
    """Member ``i``'s slice of each stacked dict or tensor (None stays None)."""
    return [None if x is None else {k: v[i] for k, v in x.items()} if isinstance(x, dict)
            else x[i] for x in stacked]


def _shared(sets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Distinct tensors of ``sets`` stacked once, and each member's index into them."""
    unique: list[Tensor] = []
    of = []
    for t in sets:
        at = next((j for j, u in enumerate(unique) if u is t or (
            u.shape == t.shape and torch.equal(u, t))), None)
        if at is None:
            unique.append(t)
            at = len(unique) - 1
        of.append(at)
    if any(u.shape != unique[0].shape for u in unique):
        raise PackError("pack: members' training sets differ in size or image shape")
    return torch.stack(unique), torch.tensor(of, device=sets[0].device)
