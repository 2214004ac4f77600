"""Pieces shared by methods: gradient reversal and its schedules, the source/target
forward pass, entropy, kernel two-sample statistics, CORAL, EMA teachers and VAT.

Each piece is a small pure function (or an ``autograd.Function``) of tensors, so a
method file reads as its loss formula.

References
----------
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (reversal);
Long et al., ICML 2015 / 2017 (MK-MMD, JMMD); Sun & Saenko, ECCV-W 2016 (CORAL);
Miyato et al., TPAMI 2018 (VAT); Tarvainen & Valpola, NeurIPS 2017 (EMA teacher).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalab.models import Classifier, batch_norms

LAMBDA_SCHEDULES = ("fixed", "ramp")


# -- gradient reversal ------------------------------------------------------------------
class GradReverse(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-weight`` backward.

    ``weight`` is a float or a 0-d tensor (a device tensor in a captured step, one value
    per member in a packed step); written in the ``setup_context`` form so that
    ``torch.func.vmap`` can batch it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: float | Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.weight = inputs[1]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.weight, None


def grad_reverse(x: Tensor, weight: float | Tensor) -> Tensor:
    """Gradient reversal with weight ``weight`` (the paper's lambda), given per call."""
    return GradReverse.apply(x, _scalar(weight))


def _scalar(value: float | Tensor) -> float | Tensor:
    """A number as a float; a tensor as it is (no device sync, vmap-safe)."""
    return value if isinstance(value, Tensor) else float(value)


def ramp(progress: float | Tensor, gamma: float = 10.0) -> float | Tensor:
    """The paper's ramp ``2 / (1 + exp(-gamma * p)) - 1``: 0 at p=0, close to 1 at p=1
    (a tensor for a tensor ``progress``)."""
    if isinstance(progress, Tensor):
        return 2.0 / (1.0 + torch.exp(-gamma * progress)) - 1.0
    return 2.0 / (1.0 + math.exp(-gamma * float(progress))) - 1.0


def grl_weight(schedule: str, maximum: float, progress: float) -> float:
    """The reversal weight at training progress ``progress`` in [0, 1].

    ``"fixed"``: ``maximum`` throughout (the original code); ``"ramp"``:
    ``maximum * ramp(progress)`` (the DANN paper's lambda_p).
    """
    if schedule == "fixed":
        return _scalar(maximum)
    if schedule == "ramp":
        return _scalar(maximum) * ramp(progress)
    raise ValueError(f"lambda_schedule: unknown value {schedule!r}; choose one of "
                     f"{', '.join(LAMBDA_SCHEDULES)}")


# -- the forward pass of both domains ---------------------------------------------------------
def features_st(model: Classifier, xs: Tensor, xt: Tensor, joint: bool = False
                ) -> tuple[Tensor, Tensor]:
    """Features ``(N, D)`` of source ``xs`` and ``(M, D)`` of target ``xt``.

    With batch norm in the network, each domain goes through separately, so each batch
    is normalised with its own statistics (the strongest public DANN code for digits
    does this), unless ``joint``: one batch of both domains, normalised together (as
    tllib trains its photo backbones and heads). Without batch norm both go through in
    one pass when their shapes agree (same result, fewer launches).
    """
    n = xs.shape[0]
    if xs.shape[1:] == xt.shape[1:] and (joint or not batch_norms(model)):
        if xs.dtype == torch.float16:  # cached block inputs (dalab.training.frozen):
            xs, xt = xs.float(), xt.float()  # autocast's cat refuses float16
        f = model.features(torch.cat([xs, xt]))
        return f[:n], f[n:]
    if joint:  # images of different channel counts: joined once preprocessed
        f = model.feature_extractor(torch.cat([model.preprocess(xs), model.preprocess(xt)]))
        return f[:n], f[n:]
    return model.features(xs), model.features(xt)


def discriminate_st(head: nn.Module, a_s: Tensor, a_t: Tensor, joint: bool = False
                    ) -> tuple[Tensor, Tensor]:
    """Domain logits ``(N,)`` and ``(M,)`` of a discriminator ``head`` on source and
    target inputs: each domain alone (its batch norm, if any, per domain) or ``joint``."""
    if joint:
        d = head(torch.cat([a_s, a_t])).reshape(-1)
        return d[:a_s.shape[0]], d[a_s.shape[0]:]
    return head(a_s).reshape(-1), head(a_t).reshape(-1)


def widths(model: Classifier) -> tuple[int, int]:
    """Feature width ``D`` (the domain head's input) and class count ``K`` (the label
    head's output) of ``model``."""
    first = next(m for m in model.domain_head.modules() if isinstance(m, nn.Linear))
    last = [m for m in model.label_head.modules() if isinstance(m, nn.Linear)][-1]
    return first.in_features, last.out_features


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of ``argmax(logits) == labels`` as a detached 0-d tensor."""
    return (logits.argmax(1) == labels).float().mean().detach()


def mlp(width: int, hidden: int, out: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """``width -> hidden -> hidden -> out`` with ReLU (the CDAN/ADDA discriminators)."""
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out))


# -- entropy ------------------------------------------------------------------------------
def entropy(logits: Tensor, reduce: bool = True) -> Tensor:
    """Shannon entropy of ``softmax(logits)`` per row ``(N,)``, or its mean."""
    logp = F.log_softmax(logits.float(), 1)
    h = -(logp.exp() * logp).sum(1)
    return h.mean() if reduce else h


def soft_cross_entropy(target_logits: Tensor, logits: Tensor) -> Tensor:
    """``mean_i KL(softmax(target_i) || softmax(logits_i))`` with the target detached."""
    p = F.softmax(target_logits.detach().float(), 1)
    return (p * (p.clamp_min(1e-12).log() - F.log_softmax(logits.float(), 1))).sum(1).mean()


# -- kernel two-sample statistics (DAN, JAN) --------------------------------------------------
def gaussian_kernels(x: Tensor, scales: Sequence[float], sigma2: float | None = None
                     ) -> Tensor:
    """Sum over ``scales`` of Gaussian kernels ``exp(-||xi - xj||^2 / (s * sigma2))`` on
    the rows of ``x`` ``(N, D)``; ``sigma2`` defaults to the mean squared distance
    (detached), the usual bandwidth heuristic."""
    d2 = torch.cdist(x.float(), x.float()).pow(2)
    if sigma2 is None:
        sigma2 = d2.detach().mean().clamp_min(1e-6)
    return sum(torch.exp(-d2 / (s * sigma2)) for s in scales)


def mmd_from_kernel(k: Tensor, n: int) -> Tensor:
    """Biased MMD^2 from a joint kernel matrix over ``n`` source then target rows."""
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


MMD_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # DAN's five bandwidths: 2**k * sigma2, k=-2..2


def mk_mmd(f_s: Tensor, f_t: Tensor, scales: Sequence[float] = MMD_SCALES) -> Tensor:
    """Multi-kernel MMD^2 between ``f_s`` (N, D) and ``f_t`` (M, D) (equal weights)."""
    return mmd_from_kernel(gaussian_kernels(torch.cat([f_s, f_t]), scales), f_s.shape[0])


def joint_mmd(layers_s: Sequence[Tensor], layers_t: Sequence[Tensor],
              scales: Sequence[Sequence[float]], sigma2: Sequence[float | None]) -> Tensor:
    """JMMD^2: MMD with the product of one multi-kernel per layer (JAN)."""
    n = layers_s[0].shape[0]
    k = None
    for s, t, sc, sig in zip(layers_s, layers_t, scales, sigma2):
        kl = gaussian_kernels(torch.cat([s, t]), sc, sig)
        k = kl if k is None else k * kl
    return mmd_from_kernel(k, n)


# -- correlation alignment ------------------------------------------------------------------
def coral(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Deep CORAL: ``||C_s - C_t||_F^2 / (4 d^2)`` with unbiased covariances."""
    def cov(f: Tensor) -> Tensor:
        f = f.float() - f.float().mean(0, keepdim=True)
        return f.T @ f / max(1, f.shape[0] - 1)
    d = f_s.shape[1]
    return (cov(f_s) - cov(f_t)).pow(2).sum() / (4 * d * d)


# -- teachers ---------------------------------------------------------------------------------
@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float | Tensor) -> None:
    """``teacher <- decay * teacher + (1 - decay) * student`` for parameters (``lerp_``);
    buffers (batch-norm statistics) are copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach(), 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters take no gradient (teachers, frozen encoders)."""
    import copy
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


# -- virtual adversarial training ---------------------------------------------------------------
def _unit(d: Tensor) -> Tensor:
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))


def vat_loss(forward: Callable[[Tensor], Tensor], z: Tensor, logits: Tensor,
             eps: float, xi: float = 1e-6) -> Tensor:
    """Virtual adversarial loss ``KL(p(z) || p(z + r_adv))`` with one power iteration.

    ``forward`` maps inputs ``z`` (already normalised images) to logits; ``logits`` are
    ``forward(z)`` (detached here); ``r_adv`` has L2 norm ``eps`` per example
    (Miyato et al., TPAMI 2018; VADA uses eps = 3.5 on unit-variance inputs).
    """
    z = z.detach()
    d = _unit(torch.randn_like(z)).mul_(xi).requires_grad_()
    dist = soft_cross_entropy(logits, forward(z + d))
    grad = torch.autograd.grad(dist, d)[0]
    r_adv = _unit(grad.detach()) * eps
    return soft_cross_entropy(logits, forward(z + r_adv))
