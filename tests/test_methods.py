"""Gradient reversal, schedules and every registered method: a few updates, where the
gradients go, training on a small easy task, and no target labels on any code path."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from dalab.methods import METHODS, grad_reverse, grl_weight, ramp
from dalab.methods.common import features_st
from dalab.methods.dann import domain_bce
from dalab.models import build_model
from dalab.training import make_config
from dalab.training.optim import annealed_lr, lr_at


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales(weight):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, weight)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -weight * w)


def test_gradient_reversal_inside_a_network_flips_only_upstream():
    lin = torch.nn.Linear(3, 1)
    x = torch.randn(5, 3)
    plain = torch.autograd.grad(lin(x).sum(), lin.weight)[0]
    x1 = x.clone().requires_grad_()
    g_rev = torch.autograd.grad(lin(grad_reverse(x1, 0.5)).sum(), [x1, lin.weight])
    x2 = x.clone().requires_grad_()
    g_plain = torch.autograd.grad(lin(x2).sum(), x2)[0]
    torch.testing.assert_close(g_rev[1], plain)  # the head itself is not reversed
    torch.testing.assert_close(g_rev[0], -0.5 * g_plain)


def test_lambda_schedules():
    assert ramp(0.0) == 0.0
    assert ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert ramp(0.25) == pytest.approx(2 / (1 + math.exp(-2.5)) - 1)
    assert grl_weight("fixed", 0.7, 0.0) == 0.7 == grl_weight("fixed", 0.7, 0.9)
    assert grl_weight("ramp", 0.5, 0.3) == pytest.approx(0.5 * ramp(0.3))
    with pytest.raises(ValueError, match="lambda_schedule"):
        grl_weight("cosine", 1.0, 0.5)


def test_learning_rate_schedules():
    assert annealed_lr(0.01, 0.0) == 0.01
    assert annealed_lr(0.01, 1.0) == pytest.approx(0.01 / 11 ** 0.75)
    assert annealed_lr(0.01, 0.5, alpha=2, beta=1) == pytest.approx(0.005)
    cfg = make_config(lr=0.1, lr_schedule="epoch", lr_decay=0.5)
    assert lr_at(cfg, 0.9, 3) == pytest.approx(0.1 * 0.5 ** 3)
    assert lr_at(make_config(lr=0.1, lr_schedule="constant"), 0.9, 3) == 0.1
    assert lr_at(make_config("paper"), 0.5, 0) == pytest.approx(0.01 / 6 ** 0.75)


SIZE = 16  # small images keep every method's test fast


def _batch(n: int = 8, size: int = SIZE, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=gen)  # grey
    ys = torch.randint(0, 10, (n,), generator=gen)
    xt = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)  # colour
    return xs, ys, xt


def _method(name: str, network: str = "dann_bn", **overrides):
    cfg = make_config("quick", method=name, network=network, optimizer="adam", lr=1e-3,
                      dropout=0.1, **overrides)
    model = build_model(network, 3, [0.4] * 3, [0.25] * 3, cfg.dropout, size=SIZE)
    return METHODS[cfg.method](model, cfg)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_updates_and_resumes(name):
    torch.manual_seed(0)
    method = _method(name)
    assert method.optimizers and all(isinstance(o, torch.optim.Optimizer)
                                     for o in method.optimizers.values())
    before = {k: v.detach().clone() for k, v in method.model.state_dict().items()}
    xs, ys, xt = _batch()
    for i in range(3):
        out = method.update(xs, ys, xt, i / 2, 1e-3)  # progress 0, 0.5, 1: both phases
        assert {"loss", "class_loss", "train_acc"} <= set(out)
        assert all(torch.isfinite(v).all() and not v.requires_grad for v in out.values()), out
    changed = [k for k, v in method.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("feature_extractor") for k in changed)
    assert any(k.startswith("label_head") for k in changed)
    # state_dict holds everything a resumed run needs: a fresh method takes it whole
    twin = _method(name)
    twin.load_state_dict(method.state_dict())
    for a, b in zip(twin.state_dict().values(), method.state_dict().values()):
        assert torch.equal(a, b)
    for key, opt in method.optimizers.items():
        twin.optimizers[key].load_state_dict(opt.state_dict())


def test_cdan_e_is_accepted_as_spelled_in_the_paper():
    assert make_config(method="cdan+e").method == "cdan_e"
    assert make_config(method="cdan+e", protocol="ts_tt").trained_method == "source_only"
    assert make_config(method="mcd").trained_method == "mcd"


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_dann_trains_with_each_optimizer(optimizer):
    torch.manual_seed(0)
    cfg = make_config("quick", optimizer=optimizer, weight_decay=1e-4, dropout=0.1)
    method = METHODS["dann"](build_model("dann", 3, [0.4] * 3, [0.25] * 3, 0.1, size=SIZE),
                             cfg)
    before = [p.detach().clone() for p in method.parameters()]
    xs, ys, xt = _batch()
    for i in range(3):
        out = method.update(xs, ys, xt, i / 3, 0.01)
        assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters()))


def _parts(method) -> dict[str, list[torch.Tensor]]:
    return {"G": list(method.model.feature_extractor.parameters()),
            "F1": list(method.model.label_head.parameters()),
            "F2": list(method.head_2.parameters())}


def test_mcd_steps_update_exactly_their_parts():
    torch.manual_seed(0)
    method = _method("mcd", mcd_steps=2)
    steps, inner = [], method.step

    def recording_step(names, loss, lr):
        snap = {k: [p.detach().clone() for p in ps] for k, ps in _parts(method).items()}
        inner(names, loss, lr)
        steps.append({k for k, ps in _parts(method).items()
                      if any(not torch.equal(a, b) for a, b in zip(snap[k], ps))})

    method.step = recording_step
    method.update(*_batch(), 0.5, 1e-2)
    assert steps == [{"G", "F1", "F2"}, {"F1", "F2"}, {"G"}, {"G"}]


def test_adda_phase_two_trains_the_target_encoder_with_the_papers_adam():
    torch.manual_seed(0)
    method = _method("adda", adda_lr=3e-4, adda_beta1=0.4)
    xs, ys, xt = _batch()
    method.update(xs, ys, xt, 0.0, 1e-3)  # phase 1: the run's optimiser
    assert method.optimizers["main"].state and not method.optimizers["target"].state
    head = [p.detach().clone() for p in method.model.label_head.parameters()]
    extractor = [p.detach().clone() for p in method.model.feature_extractor.parameters()]
    main_state = [v["exp_avg"].clone() for v in method.optimizers["main"].state.values()]
    method.update(xs, ys, xt, 0.7, 1e-3)  # phase 2: fresh Adam, its own lr and beta1
    for name in ("target", "disc"):
        group = method.optimizers[name].param_groups[0]
        assert group["lr"] == 3e-4 and group["betas"] == (0.4, 0.999)
        assert method.optimizers[name].state
    assert all(torch.equal(a, b) for a, b in zip(head, method.model.label_head.parameters()))
    assert any(not torch.equal(a, b)
               for a, b in zip(extractor, method.model.feature_extractor.parameters()))
    assert all(torch.equal(a, v["exp_avg"])
               for a, v in zip(main_state, method.optimizers["main"].state.values()))


def test_dann_reverses_exactly_the_domain_gradient_of_the_features():
    torch.manual_seed(0)
    cfg = make_config("quick", lambda_schedule="fixed", grl_lambda=0.7)
    method = METHODS["dann"](build_model("dann", 3, [0.4] * 3, [0.25] * 3, size=SIZE), cfg)
    xs, ys, xt = _batch()
    params = list(method.model.feature_extractor.parameters())
    out = method.losses(xs, ys, xt, 0.5)
    g_total = torch.autograd.grad(out["loss"], params, retain_graph=True)
    g_class = torch.autograd.grad(out["class_loss"], params)
    f_s, f_t = features_st(method.model, xs, xt)
    plain, _ = domain_bce(method.model.discriminate(f_s), method.model.discriminate(f_t))
    g_domain = torch.autograd.grad(plain, params)
    for total, cls, dom in zip(g_total, g_class, g_domain):
        torch.testing.assert_close(total - cls, -0.7 * dom, rtol=1e-4, atol=1e-6)
    # the domain head itself descends the domain loss: no reversal there
    head = list(method.model.domain_head.parameters())
    out = method.losses(xs, ys, xt, 0.5)
    f_s, f_t = features_st(method.model, xs, xt)
    plain, _ = domain_bce(method.model.discriminate(f_s), method.model.discriminate(f_t))
    for a, b in zip(torch.autograd.grad(out["loss"], head), torch.autograd.grad(plain, head)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["dann", "cdan", "mcc"])
def test_joint_bn_normalises_source_and_target_as_one_batch(name):
    """``joint_bn``: the losses are those of one forward of the concatenated batch
    (tllib's); per domain (the default) they differ on a batch-norm network."""
    xs, ys, xt = _batch()
    xs = xs.expand(-1, 3, -1, -1)  # one shape, so the joint batch is a plain cat
    losses = {}
    for joint in (False, True):
        torch.manual_seed(0)
        cfg = make_config("quick", method=name, network="dann_bn", dropout=0.0,
                          joint_bn=joint)  # no dropout: the forwards below are the same
        method = METHODS[name](build_model("dann_bn", 3, [0.4] * 3, [0.25] * 3, 0.0,
                                           size=SIZE), cfg)
        torch.manual_seed(1)
        losses[joint] = method.losses(xs, ys, xt, 0.5)
    model = method.model
    f = model.features(torch.cat([xs, xt]))
    assert torch.allclose(model.classify(f[:8]), model.classify(features_st(
        model, xs, xt, joint=True)[0]))
    if name == "dann":
        d = model.discriminate(f)
        expected, _ = domain_bce(d[:8], d[8:])
        torch.testing.assert_close(losses[True]["domain_loss"], expected)
    assert not torch.allclose(losses[True]["loss"], losses[False]["loss"])


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_fixmatch_domain_term_trains_the_domain_head_only_when_asked(weight):
    torch.manual_seed(0)
    method = _method("fixmatch", fixmatch_domain_weight=weight, lambda_schedule="fixed",
                     grl_lambda=1.0)
    out = method.losses(*_batch(), 0.5)
    head = list(method.model.domain_head.parameters())
    grads = torch.autograd.grad(out["loss"], head, allow_unused=True, retain_graph=True)
    if weight == 0:  # the paper's FixMatch: no domain loss, the head is untouched
        assert "domain_loss" not in out and all(g is None for g in grads)
        return
    for total, dom in zip(grads, torch.autograd.grad(out["domain_loss"], head)):
        torch.testing.assert_close(total, weight * dom)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_fixmatch_class_confusion_term_only_when_asked(weight):
    torch.manual_seed(0)
    method = _method("fixmatch", fixmatch_mcc_weight=weight, fixmatch_threshold=0.0)
    out = method.losses(*_batch(), 0.5)
    if weight == 0:  # the paper's FixMatch: no class-confusion term
        assert "class_confusion" not in out
        return
    torch.testing.assert_close(out["loss"], out["class_loss"] + out["pseudo_loss"]
                               + weight * out["class_confusion"])
    # the term is the weak target pass's: its gradient reaches the features and the head
    for part in (method.model.feature_extractor, method.model.label_head):
        grads = torch.autograd.grad(out["class_confusion"], list(part.parameters()),
                                    retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_method_signatures_take_no_target_labels():
    for cls in METHODS.values():
        assert list(inspect.signature(cls.update).parameters) == [
            "self", "xs", "ys", "xt", "progress", "lr"], cls


def _shapes_task(n: int, classes: int, colour: bool, seed: int):
    """An easy task: class k is a bright square in the k-th of four places on a noisy
    background; the colour version tints each image (the domain shift)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = torch.rand(n, 1, SIZE, SIZE, generator=gen) * 0.3
    for k in range(classes):
        r, c = divmod(k, 2)
        x[y == k, :, 2 + 7 * r:7 + 7 * r, 2 + 7 * c:7 + 7 * c] += 0.7
    if colour:
        x = x * (0.3 + 0.7 * torch.rand(n, 3, 1, 1, generator=gen))
    return (x.clamp(0, 1) * 255).to(torch.uint8), y


@pytest.fixture
def two_threads():
    """Two torch threads, as on the CI machine (a run trained earlier in the session may
    have set one): float sums, and so these borderline figures, depend on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_learns_an_easy_shift_well_above_chance(name, two_threads):
    torch.manual_seed(0)
    classes = 4
    cfg = make_config("quick", method=name, network="dann_bn", optimizer="adam", lr=3e-3,
                      lr_schedule="constant", fixmatch_threshold=0.8, se_threshold=0.8)
    model = build_model("dann_bn", 3, [0.3] * 3, [0.3] * 3, num_classes=classes, size=SIZE)
    method = METHODS[cfg.method](model, cfg)
    xs, ys = _shapes_task(256, classes, colour=False, seed=1)
    xt, yt = _shapes_task(256, classes, colour=True, seed=2)
    steps = 40
    for i in range(steps):
        idx = torch.randint(0, 256, (32,))
        method.update(xs[idx], ys[idx], xt[torch.randint(0, 256, (32,))], i / steps, 3e-3)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()  # labels read here only
    assert acc >= 0.7, f"{name}: target accuracy {acc:.2f} (chance 0.25)"


class _GuardedSplit:
    """A target split whose labels raise when any method's code is on the stack."""

    def __init__(self, name: str, images: torch.Tensor, labels: torch.Tensor):
        self.name, self.images, self._labels = name, images, labels

    @property
    def labels(self) -> torch.Tensor:
        frames = [f.filename.replace("\\", "/") for f in inspect.stack(0)]
        if any("/dalab/methods/" in f for f in frames):
            raise AssertionError("a method read target labels")
        return self._labels

    def __len__(self) -> int:
        return len(self.images)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_loop_hands_methods_target_images_only(name, monkeypatch):
    from dalab.data import Split
    from dalab.training import loop
    from dalab.training.domains import Sets

    gen = torch.Generator().manual_seed(0)
    xs = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=gen)
    xt = torch.randint(0, 256, (16, 3, 28, 28), dtype=torch.uint8, generator=gen)
    ys, yt = torch.arange(16) % 10, torch.arange(16) % 10
    src = Split("source", xs, ys)
    tgt = _GuardedSplit("target", xt, yt)
    sets = Sets(labelled=src, unlabelled=xt, test="target_test", channels=3,
                size=28, class_names=tuple("0123456789"), source="source", target="target",
                evals={"source_train": src, "target_train": tgt, "source_test": src,
                       "target_test": tgt})
    monkeypatch.setattr(loop, "load_sets", lambda cfg: sets)
    cls, seen = METHODS[name], []
    original = cls.update

    def spy(self, xs, ys, xt, progress, lr):
        seen.append(type(xt))  # a bare tensor of images: nothing to read labels from
        return original(self, xs, ys, xt, progress, lr)

    monkeypatch.setattr(cls, "update", spy)
    cfg = make_config("quick", method=name, network="dann_bn", epochs=1, batch_size=8,
                      threads=1, channels_last=False)
    result = loop.train(cfg, log=lambda *a: None)
    assert seen == [torch.Tensor, torch.Tensor]
    assert 0.0 <= result.target_test_accuracy <= 1.0  # evaluation may read them


def test_weak_and_strong_augmentations_are_seeded_batch_ops():
    from dalab.data.augment import random_affine, strong, weak

    x = torch.zeros(6, 1, SIZE, SIZE, dtype=torch.uint8)
    x[:, :, 6:10, 6:10] = 255  # a square in the middle
    for fn in (weak, strong):
        a = fn(x, 3, torch.Generator().manual_seed(1))
        assert a.shape == (6, 3, SIZE, SIZE) and a.dtype == torch.float32
        assert 0.0 <= a.min() and a.max() <= 1.0
        assert torch.equal(a, fn(x, 3, torch.Generator().manual_seed(1)))
        assert not torch.equal(a, fn(x, 3, torch.Generator().manual_seed(2)))
    # a zero-range affine map is the identity; a shift moves the square's mass
    xf = x.float() / 255
    torch.testing.assert_close(random_affine(xf, None, shift=0.0), xf, atol=1e-5, rtol=0)
    moved = random_affine(xf, torch.Generator().manual_seed(0), shift=3.0)
    assert torch.allclose(moved.sum((1, 2, 3)), xf.sum((1, 2, 3)), rtol=0.05)
    assert not torch.allclose(moved, xf, atol=0.1)
