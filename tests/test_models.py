"""Networks: shapes, preprocessing inside the model, statistics as buffers."""

from __future__ import annotations

import pytest
import torch

from dalab.errors import ConfigError
from dalab.models import NETWORKS, build_model, channel_stats


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_split(network, channels):
    torch.manual_seed(0)
    model = build_model(network, channels, [0.5] * channels, [0.25] * channels).eval()
    x = torch.randint(0, 256, (5, channels, 28, 28), dtype=torch.uint8)
    f = model.features(x)
    assert f.ndim == 2 and f.shape[0] == 5
    assert model.classify(f).shape == (5, 10)
    assert model.discriminate(f).shape == (5,)
    assert torch.equal(model(x), model.classify(f))


def test_uint8_and_unit_float_agree_and_grey_is_replicated():
    torch.manual_seed(0)
    model = build_model("dann", 3, [0.2, 0.3, 0.4], [0.3, 0.3, 0.3]).eval()
    grey = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    colour = grey.expand(-1, 3, -1, -1).contiguous()
    out = model(grey)
    torch.testing.assert_close(out, model(grey.float() / 255))
    torch.testing.assert_close(out, model(colour))


def test_normalisation_stats_are_buffers_in_the_state_dict():
    model = build_model("lenet", 1, [0.13], [0.31])
    state = model.state_dict()
    assert state["mean"].flatten().tolist() == pytest.approx([0.13])
    assert state["std"].flatten().tolist() == pytest.approx([0.31])
    x = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    assert model.preprocess(x).flatten()[0].item() == pytest.approx((1 - 0.13) / 0.31)


def test_channel_stats_replicate_grey_to_colour():
    grey = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    mean, std = channel_stats(grey, channels=3)
    assert mean == pytest.approx([0.5] * 3)
    assert std == pytest.approx([0.5] * 3)


def test_bad_network_and_channels_are_config_errors():
    with pytest.raises(ConfigError, match="network.*'resnet'.*lenet"):
        build_model("resnet", 3, [0.5] * 3, [0.2] * 3)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("dann", 2, [0.5] * 2, [0.2] * 2)
