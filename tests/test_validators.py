"""Unsupervised validators on synthetic features and predictions with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from dalab.evaluation import validators as v


def _one_hot(labels, k):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).double()


def test_entropy_and_im_on_known_distributions():
    k, n = 4, 8
    uniform = torch.full((n, k), 1 / k, dtype=torch.float64)
    balanced = _one_hot([i % k for i in range(n)], k)
    collapsed = _one_hot([0] * n, k)
    assert v.neg_entropy(uniform) == pytest.approx(-math.log(k))
    assert v.neg_entropy(balanced) == pytest.approx(0.0, abs=1e-9)
    assert v.information_maximization(balanced) == pytest.approx(math.log(k))
    assert v.information_maximization(collapsed) == pytest.approx(0.0, abs=1e-9)
    assert v.information_maximization(uniform) == pytest.approx(0.0, abs=1e-9)
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0]] * n, dtype=torch.float64)
    assert v.neg_entropy(half) == pytest.approx(-math.log(2))


def test_bnm_is_the_nuclear_norm_over_n():
    k = 4
    counts = [6, 2, 1, 1]
    labels = [c for c, m in enumerate(counts) for _ in range(m)]
    n = len(labels)
    assert v.batch_nuclear_norm(_one_hot(labels, k)) == pytest.approx(
        sum(math.sqrt(m) for m in counts) / n)
    uniform = torch.full((n, k), 1 / k, dtype=torch.float64)
    assert v.batch_nuclear_norm(uniform) == pytest.approx(math.sqrt(n / k) / n)
    balanced = _one_hot([i % k for i in range(8)], k)
    assert v.batch_nuclear_norm(balanced) > v.batch_nuclear_norm(_one_hot([0] * 8, k))


def test_snd_on_hand_computed_neighbourhoods():
    # two identical points and one orthogonal one: each of the pair has one neighbour
    # with similarity 1 and one with 0
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = 0.5
    p_close = math.exp(1 / t) / (math.exp(1 / t) + 1)
    h_pair = -(p_close * math.log(p_close) + (1 - p_close) * math.log(1 - p_close))
    h_lone = math.log(2)  # both neighbours at similarity 0
    assert v.soft_neighborhood_density(probs, temperature=t) == pytest.approx(
        (2 * h_pair + h_lone) / 3)
    # K one-hot clusters of m points: m - 1 neighbours at similarity 1, the rest at 0
    k, m, t = 3, 5, 0.05
    labels = [c for c in range(k) for _ in range(m)]
    near, far = math.exp(1 / t), 1.0
    z = (m - 1) * near + (k - 1) * m * far
    h = -((m - 1) * near / z * math.log(near / z) + (k - 1) * m * far / z * math.log(far / z))
    assert v.soft_neighborhood_density(_one_hot(labels, k), temperature=t) == pytest.approx(h)


def test_dev_weights_follow_the_density_ratio():
    gen = torch.Generator().manual_seed(0)
    n = 4000
    f_s = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    f_t = torch.randn(n, 2, generator=gen, dtype=torch.float64) + torch.tensor([1.0, 0.0])
    x = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [0.5, 0.0], [2.0, 0.0]], dtype=torch.float64)
    w = v.domain_density_ratio(f_s, f_t, x, l2=0.0)
    # N(1, 1) / N(0, 1) at x is exp(x - 1/2)
    assert w.log() == pytest.approx(x[:, 0] - 0.5, abs=0.12)


def test_dev_risk_with_constant_weights_is_the_mean_loss():
    losses = torch.tensor([0.1, 0.5, 2.0, 0.4])
    assert v.deep_embedded_validation(losses, torch.ones(4)) == pytest.approx(-0.75)
    # the control variate removes the part of the weighted loss explained by the weights:
    # a loss proportional to 1/w gives the same weighted loss everywhere, hence no variance
    w = torch.tensor([0.5, 1.0, 1.5, 1.0], dtype=torch.float64)
    assert v.deep_embedded_validation(1.0 / w, w) == pytest.approx(-1.0)


def test_ami_matches_known_values_and_scikit_learn():
    a = torch.tensor([0, 0, 1, 1, 2, 2])
    assert v.adjusted_mutual_info(a, torch.tensor([5, 5, 3, 3, 9, 9])) == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randint(4, (300,), generator=gen), torch.randint(3, (300,), generator=gen)
    assert abs(v.adjusted_mutual_info(x, y)) < 0.05
    metrics = pytest.importorskip("sklearn.metrics")
    z = torch.where(torch.rand(300, generator=gen) < 0.7, x, torch.randint(4, (300,), generator=gen))
    for p, q in ((x, y), (x, z), (a, torch.tensor([0, 1, 1, 1, 2, 0]))):
        assert v.adjusted_mutual_info(p, q) == pytest.approx(
            metrics.adjusted_mutual_info_score(p.numpy(), q.numpy()), abs=1e-9)


def test_classami_on_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(150) % 3
    feats = centres[truth] + 0.5 * torch.randn(150, 2, generator=gen)
    agreeing = _one_hot(truth, 3)
    random = _one_hot(torch.randint(3, (150,), generator=gen), 3)
    assert v.class_ami(feats, agreeing) == pytest.approx(1.0)
    assert abs(v.class_ami(feats, random)) < 0.1


def test_score_validators_on_a_tiny_model():
    from dalab.models import build_model

    torch.manual_seed(0)
    model = build_model("dann", 3, [0.5] * 3, [0.25] * 3, 0.0)
    gen = torch.Generator().manual_seed(0)
    xt = torch.randint(0, 256, (64, 3, 28, 28), generator=gen, dtype=torch.uint8)
    xs = torch.randint(0, 256, (64, 1, 28, 28), generator=gen, dtype=torch.uint8)
    ys = torch.randint(10, (64,), generator=gen)
    model.train()
    scores = v.score_validators(model, xt, xs, (xs, ys), batch_size=16, device="cpu")
    assert set(scores) == set(v.VALIDATORS) and model.training
    assert all(math.isfinite(s) for s in scores.values())
    assert -math.log(10) - 1e-6 <= scores["entropy"] <= 0
    assert "dev" not in v.score_validators(model, xt, xs, None, device="cpu")
