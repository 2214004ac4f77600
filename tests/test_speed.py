"""The fast path: flags (bf16 autocast, channels-last, torch.compile) on the CPU:
channels-last and the compile fallback give the plain path's losses, bf16 autocast
losses near them, and runs stay bit-for-bit repeatable; batch augmentations are tensor
ops on the images' device."""

from __future__ import annotations

import warnings

import pytest
import torch

from dalab.bench.bare_step import build_step, random_batch
from dalab.training import make_config, train
from dalab.data.augment import AUGMENTS, augment, color_jitter

FAST = dict(amp=True, channels_last=True, compile=True)
CPU = torch.device("cpu")


def _losses(flags: dict, steps: int = 3) -> list[dict]:
    torch.set_num_threads(1)
    step, _ = build_step("dann", 16, CPU, seed=0, **flags)
    xs, ys, xt = random_batch(16, CPU, channels_last=flags.get("channels_last", False))
    return [{k: v.item() for k, v in step(xs, ys, xt, i / steps, 0.01).items()}
            for i in range(steps)]


def test_fast_flags_give_the_plain_losses_on_cpu():
    with pytest.warns(UserWarning, match="compile: torch.compile is skipped on CPU"):
        fast = _losses(dict(FAST, amp=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a CPU without native bf16 says so
        bf16 = _losses(dict(FAST, compile=False))
    plain = _losses({})
    for a, b, c in zip(fast, plain, bf16):
        assert a.keys() == b.keys() == c.keys()
        for key in a:  # channels-last changes the summation order only
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # bf16 rounds inputs and weights to 8 bits of mantissa: near the losses, not equal
    assert [c["loss"] for c in bf16] != [b["loss"] for b in plain]
    assert [c["loss"] for c in bf16] == pytest.approx([b["loss"] for b in plain], rel=0.05)


def _run(data_root, cache_dir, **kw) -> tuple[dict, dict[str, torch.Tensor], list]:
    values = dict(protocol="tst_tt", max_train=128, max_eval=64, batch_size=32, epochs=1,
                  threads=1, device="cpu", data_root=str(data_root),
                  cache_dir=str(cache_dir))
    values.update(kw)
    seen: dict = {}
    steps: list[int] = []

    def hook(step, model):
        steps.append(step)
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    result = train(make_config("speedrun", **values), log=lambda s: None, on_step=hook)
    figures = {k: v for k, v in result.to_dict().items() if k != "seconds"}
    return figures, seen, steps


def test_fast_path_run_is_bit_for_bit_repeatable(data_root, cache_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the CPU fallbacks warn
        first, state_1, steps = _run(data_root, cache_dir, seed=3, **FAST)
        second, state_2, _ = _run(data_root, cache_dir, seed=3, **FAST)
        other, state_3, _ = _run(data_root, cache_dir, seed=4, **FAST)
    assert steps == list(range(1, 5))  # on_step sees every step: 128 // 32
    assert first == second
    assert all(torch.equal(state_1[k], state_2[k]) for k in state_1)
    assert not all(torch.equal(state_1[k], state_3[k]) for k in state_1)


def test_color_jitter_is_a_seeded_batch_op():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    a = color_jitter(x, torch.Generator().manual_seed(1))
    b = color_jitter(x, torch.Generator().manual_seed(1))
    c = color_jitter(x, torch.Generator().manual_seed(2))
    assert a.shape == (64, 3, 28, 28) and a.dtype == torch.uint8 and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    # per channel: an affine map of the digit, inverted in about half of the channels
    xf, af = x.float().flatten(1), a.float().flatten(2)
    corr = torch.stack([torch.corrcoef(torch.stack([xf[i], af[i, ch]]))[0, 1]
                        for i in range(64) for ch in range(3)])
    assert (corr > 0.99).any() and (corr < -0.99).any()
    assert 0.25 < (corr < 0).float().mean() < 0.75


def test_augment_registry():
    x = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    assert augment("none", x, gen) is x
    assert augment("color", x, gen).shape == x.shape
    assert set(AUGMENTS) == {"none", "color"}
    with pytest.raises(ValueError, match="augment: unknown value 'flip'"):
        augment("flip", x, gen)


@pytest.mark.parametrize("preset", ["speedrun", "speedrun-gpu"])
def test_speedrun_presets_read_no_target_labels(preset):
    cfg = make_config(preset)
    assert cfg.protocol == "tst_tt" and cfg.select == "none" and not cfg.oracle_selection
    assert cfg.augment == "color" and not cfg.validators


@pytest.mark.gpu
def test_gpu_fast_path_matches_plain_losses():
    cuda = torch.device("cuda")
    losses = []
    for flags in ({}, dict(channels_last=True, amp=True)):
        step, _ = build_step("dann", 64, cuda, seed=0, **flags)
        xs, ys, xt = random_batch(64, cuda, channels_last=flags.get("channels_last", False))
        losses.append(step(xs, ys, xt, 0.0, 0.01)["loss"].item())
    assert losses[1] == pytest.approx(losses[0], rel=0.05)  # bf16 rounding
