"""Unsupervised validators: scores of a model that need no target labels.

Each validator is a small pure function of features, logits or probabilities, in the
spirit of skada's scorers (``skada/metrics.py``); **greater is better** for every one,
so a selection rule keeps the epoch with the highest score. ``score_validators``
computes them all for one model on a fixed subsample of images.

============  =====================================================  ======================
name          what it measures                                       needs
============  =====================================================  ======================
entropy       minus the mean entropy of target predictions           target images
im            information maximisation: H(mean p) − mean H(p)        target images
bnm           nuclear norm of the target softmax matrix / N          target images
snd           soft neighbourhood density of target predictions       target images
dev           minus the importance-weighted source validation loss   source val labels +
              (deep embedded validation, control-variate form)       target images
classami      agreement (AMI) of k-means clusters of target features target images
              with the predicted classes
============  =====================================================  ======================

References
----------
Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment for Unsupervised
Deep Domain Adaptation", ICLR 2018 (target entropy as a validation criterion).
Gomes, Krause & Perona, "Discriminative clustering by regularized information
maximization", NeurIPS 2010; Shi & Sha, ICML 2012 (information maximisation).
Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization
under Label Insufficient Situations", CVPR 2020 (BNM).
Saito et al., "Tune it the Right Way: Unsupervised Validation of Domain Adaptation via
Soft Neighborhood Density", ICCV 2021 (SND).
You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain
Adaptation", ICML 2019 (DEV).
Musgrave, Belongie & Lim, "Three New Validators and a Large-Scale Benchmark Ranking for
Unsupervised Domain Adaptation", arXiv:2208.07360, 2022 (ClassAMI).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dalab.evaluation.fixed import fixed_chunks

# the label-free scores computed here ("dev" also reads labelled source validation
# images); accuracy on source validation data is the loop's own per-epoch figure
VALIDATORS = ("entropy", "im", "bnm", "snd", "dev", "classami")
NEEDS_SOURCE_VAL = frozenset({"dev"})
SND_TEMPERATURE = 0.05  # Saito et al.'s temperature for the neighbourhood softmax


# -- scores of predictions -------------------------------------------------------------------

def entropy(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """Entropy (nats) of each row of ``probs`` ``(N, K)``, shape ``(N,)``."""
    return -(probs * (probs + eps).log()).sum(1)


def neg_entropy(probs: Tensor) -> float:
    """Minus the mean prediction entropy: 0 for confident predictions, −log K for uniform.

    Parameters
    ----------
    probs
        Target softmax probabilities ``(N, K)``.
    """
    return -entropy(probs).mean().item()


def information_maximization(probs: Tensor) -> float:
    """``H(mean p) − mean H(p)``: high when predictions are confident *and* diverse.

    At most ``log K`` (confident and balanced over K classes); 0 for a constant
    prediction, confident or not.
    """
    return (entropy(probs.mean(0, keepdim=True))[0] - entropy(probs).mean()).item()


def batch_nuclear_norm(probs: Tensor) -> float:
    """``||P||_* / N``, the nuclear norm of the ``(N, K)`` softmax matrix over N.

    High when predictions are confident and diverse. For one-hot rows with ``n_k`` rows
    in class k the singular values are ``sqrt(n_k)``, so the score is
    ``sum_k sqrt(n_k) / N`` (largest for balanced classes); uniform rows give the
    rank-1 value ``sqrt(N / K) / N``.
    """
    return (torch.linalg.svdvals(probs.double()).sum() / probs.shape[0]).item()


def soft_neighborhood_density(probs: Tensor, temperature: float = SND_TEMPERATURE) -> float:
    """Mean entropy of each target point's soft neighbourhood (Saito et al., 2021).

    Rows of ``probs`` are L2-normalised; similarities to the other points (self
    excluded), divided by ``temperature``, go through a softmax per row; the score is
    the mean entropy of those rows. Points whose predictions have many close
    neighbours (dense clusters) score high.
    """
    p = F.normalize(probs.double(), dim=1)
    sim = p @ p.T / temperature
    sim.fill_diagonal_(-math.inf)
    return entropy(sim.softmax(1)).mean().item()


# -- deep embedded validation -----------------------------------------------------------------

def domain_density_ratio(f_fit_s: Tensor, f_fit_t: Tensor, f_eval: Tensor,
                         l2: float = 1e-2, iters: int = 100) -> Tensor:
    """Importance weights ``w(x) = p_t(x) / p_s(x)`` of ``f_eval`` from a domain classifier.

    A logistic regression (L2 penalty ``l2``, L-BFGS) separates source features
    ``f_fit_s`` from target features ``f_fit_t``; then
    ``w = n_s / n_t * P(target | x) / P(source | x)`` at each row of ``f_eval``. Fitting
    on other source points than those weighted keeps the weights honest.
    """
    x = torch.cat([f_fit_s, f_fit_t]).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    y = torch.cat([torch.zeros(len(f_fit_s)), torch.ones(len(f_fit_t))]).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    logit = ((f_eval.double() - mean) / std) @ w.detach() + b.detach()
    return logit.exp() * (len(f_fit_s) / len(f_fit_t))


def deep_embedded_validation(losses: Tensor, weights: Tensor) -> float:
    """Minus the DEV risk (You et al., 2019) of per-example source validation losses.

    ``L_i = w_i * loss_i``; the control variate ``eta = −Cov(L, w) / Var(w)`` gives the
    risk ``mean(L) + eta * mean(w) − eta``, an importance-weighted estimate of the
    target loss with lower variance than ``mean(L)``. Returned negated (greater is
    better).
    """
    weighted = weights.double() * losses.double()
    w = weights.double()
    var = w.var()
    eta = -((weighted - weighted.mean()) * (w - w.mean())).mean() / var if var > 0 else 0.0
    return -(weighted.mean() + eta * w.mean() - eta).item()


# -- clustering agreement -------------------------------------------------------------------

def kmeans(x: Tensor, k: int, iters: int = 30, seed: int = 0) -> Tensor:
    """Cluster labels ``(N,)`` of Lloyd's k-means with k-means++ seeding (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    x = x.double().cpu()
    centres = x[torch.randint(len(x), (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(1).values.square()
        if d2.sum() <= 0:
            pick = torch.randint(len(x), (1,), generator=gen)
        else:
            pick = torch.multinomial(d2 / d2.sum(), 1, generator=gen)
        centres = torch.cat([centres, x[pick]])
    labels = torch.cdist(x, centres).argmin(1)
    for _ in range(iters):
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centres[j] = members.mean(0)
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def adjusted_mutual_info(a: Tensor, b: Tensor) -> float:
    """Adjusted mutual information of two labelings (arithmetic-mean normalisation).

    ``(MI − E[MI]) / (mean(H(a), H(b)) − E[MI])`` with the expectation under the
    hypergeometric model of random labelings (Vinh, Epps & Bailey, JMLR 2010): 1 for
    identical partitions (up to renaming), about 0 for independent ones. Matches
    scikit-learn's ``adjusted_mutual_info_score``.
    """
    a, b = a.long().cpu(), b.long().cpu()
    n = len(a)
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    if ka == kb == 1 or ka == kb == n:
        return 1.0
    table = torch.bincount(a * kb + b, minlength=ka * kb).view(ka, kb).double()
    ra, cb = table.sum(1), table.sum(0)
    nz = table > 0
    mi = (table[nz] / n * (table[nz] * n / (ra[:, None] * cb[None, :])[nz]).log()).sum()
    h_a, h_b = _label_entropy(ra / n), _label_entropy(cb / n)
    emi = _expected_mutual_info(ra, cb, n)
    denom = (h_a + h_b) / 2 - emi
    if abs(denom) < 1e-15:
        return 0.0
    return ((mi - emi) / denom).item()


def _label_entropy(p: Tensor) -> Tensor:
    p = p[p > 0]
    return -(p * p.log()).sum()


def _expected_mutual_info(ra: Tensor, cb: Tensor, n: int) -> Tensor:
    """E[MI] of random labelings with row sums ``ra`` and column sums ``cb``."""
    nij = torch.arange(1, n + 1, dtype=torch.float64)  # candidate cell counts
    a, b = ra[:, None, None], cb[None, :, None]
    lo = torch.clamp(a + b - n, min=1)
    hi = torch.minimum(a, b)
    valid = (nij >= lo) & (nij <= hi)
    lg = torch.lgamma
    log_p = (lg(a + 1) + lg(b + 1) + lg(n - a + 1) + lg(n - b + 1) - math.lgamma(n + 1)
             - lg(nij + 1) - lg(a - nij + 1) - lg(b - nij + 1) - lg(n - a - b + nij + 1))
    term = nij / n * torch.log(n * nij / (a * b)) * log_p.exp()
    return torch.where(valid, term, 0.0).sum()


def class_ami(features: Tensor, probs: Tensor, seed: int = 0) -> float:
    """AMI between k-means clusters of target ``features`` (k = number of classes) and
    the predicted classes: high when the classifier's decision follows the structure
    of the feature space (Musgrave et al., 2022)."""
    k = probs.shape[1]
    return adjusted_mutual_info(kmeans(features, k, seed=seed), probs.argmax(1))


# -- every validator for one model ------------------------------------------------------------

@torch.inference_mode()
def _forward(model, images: Tensor, batch_size: int, device,
             cuda_graphs: bool) -> tuple[Tensor, Tensor]:
    """Features and logits of ``images`` (float32, on the CPU), at one batch shape
    (:mod:`dalab.evaluation.fixed`)."""
    feats, logits = [], []
    for f, lo in fixed_chunks(model, _features_and_logits, images, batch_size,
                              torch.device(device), capture=cuda_graphs):
        feats.append(f)
        logits.append(lo)
    return torch.cat(feats).cpu(), torch.cat(logits).cpu()


def _features_and_logits(model, x: Tensor) -> tuple[Tensor, Tensor]:
    f = model.features(x)
    return f.float(), model.classify(f).float()


def score_validators(model, target: Tensor, source_fit: Tensor,
                     source_val: tuple[Tensor, Tensor] | None, batch_size: int = 2048,
                     device=None, names=VALIDATORS, cuda_graphs: bool = False
                     ) -> dict[str, float]:
    """Every validator in ``names`` (greater is better) for ``model`` in eval mode;
    ``cuda_graphs``: on CUDA its forwards replay captured graphs.

    Parameters
    ----------
    target
        Unlabelled target images ``(N, C, H, W)``: the only target data used.
    source_fit
        Labelled-domain training images: the source side of DEV's domain classifier.
    source_val
        ``(images, labels)`` of held-out source validation images, or None; then the
        validators that need them (:data:`NEEDS_SOURCE_VAL`) are left out.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        f_t, logits_t = _forward(model, target, batch_size, device, cuda_graphs)
        probs = logits_t.softmax(1)
        out = {}
        if "entropy" in names:
            out["entropy"] = neg_entropy(probs)
        if "im" in names:
            out["im"] = information_maximization(probs)
        if "bnm" in names:
            out["bnm"] = batch_nuclear_norm(probs)
        if "snd" in names:
            out["snd"] = soft_neighborhood_density(probs)
        if "classami" in names:
            out["classami"] = class_ami(f_t, probs)
        if "dev" in names and source_val is not None:
            x_val, y_val = source_val
            f_v, logits_v = _forward(model, x_val, batch_size, device, cuda_graphs)
            f_s, _ = _forward(model, source_fit, batch_size, device, cuda_graphs)
            weights = domain_density_ratio(f_s, f_t, f_v)
            losses = F.cross_entropy(logits_v, y_val.cpu(), reduction="none")
            out["dev"] = deep_embedded_validation(losses, weights)
    finally:
        model.train(was_training)
    return out
