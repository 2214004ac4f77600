"""Networks: shapes, preprocessing inside the model, statistics as buffers."""

from __future__ import annotations

import pytest
import torch

from dalab.errors import ConfigError
from dalab.models import BACKBONES, NETWORKS, build_model, channel_stats


@pytest.mark.parametrize("network", sorted(set(NETWORKS) - set(BACKBONES)))  # test_backbones.py
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


def test_resnet18_builds_for_64_px_with_torchvision_names_and_tllib_head():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, num_classes=7, size=64)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    f = model.features(x)  # training mode: untrained in eval mode is slow (denormals)
    assert f.shape == (2, 256) and model.classify(f).shape == (2, 7)
    assert model.discriminate(f).shape == (2,)
    names = set(model.feature_extractor.backbone.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"} <= names
    assert model.feature_extractor.bottleneck[0].in_features == 512
    assert model.class_names == tuple(str(k) for k in range(7))


def _save_tensors(path, state):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def test_init_weights_loads_the_feature_extractor_and_skips_extra_tensors(tmp_path):
    from dalab.models.pretrained import load_init_weights

    torch.manual_seed(0)
    donor = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, size=64)
    state = dict(donor.feature_extractor.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # a classifier's head
    _save_tensors(tmp_path / "features.safetensors", state)
    torch.manual_seed(1)
    model = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, size=64)
    skipped = load_init_weights(model, tmp_path / "features.safetensors")
    assert skipped == ["fc.weight"]
    for key, value in donor.feature_extractor.state_dict().items():
        assert torch.equal(model.feature_extractor.state_dict()[key], value), key
    # a whole dalab checkpoint works too: its prefix is stripped, heads left alone
    _save_tensors(tmp_path / "model.safetensors", donor.state_dict())
    head = model.label_head[1].weight.clone()
    skipped = load_init_weights(model, tmp_path / "model.safetensors")
    assert "label_head.1.weight" in skipped
    assert "feature_extractor.backbone.conv1.weight" not in skipped
    assert torch.equal(model.label_head[1].weight, head)


def test_init_weights_errors_name_the_file_and_the_tensors(tmp_path):
    from dalab.errors import DataError
    from dalab.models.pretrained import load_init_weights

    model = build_model("resnet18", 1, [0.5], [0.25], size=64)
    colour = build_model("resnet18", 3, [0.5] * 3, [0.25] * 3, size=64)
    state = dict(colour.feature_extractor.state_dict())
    _save_tensors(tmp_path / "colour.safetensors", state)
    with pytest.raises(ConfigError, match=r"colour.safetensors.*backbone.conv1.weight \(file "
                       r"\(64, 3, 7, 7\), network \(64, 1, 7, 7\)\)"):
        load_init_weights(model, tmp_path / "colour.safetensors")
    del state["backbone.layer4.1.bn2.bias"]
    _save_tensors(tmp_path / "partial.safetensors", state)
    with pytest.raises(ConfigError, match="1 tensor.*missing: backbone.layer4.1.bn2.bias"):
        load_init_weights(colour, tmp_path / "partial.safetensors")
    with pytest.raises(DataError, match="nothing.safetensors: no such file"):
        load_init_weights(colour, tmp_path / "nothing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="junk.safetensors: not a readable safetensors"):
        load_init_weights(colour, tmp_path / "junk.safetensors")


def test_tllib_lenet_has_the_bottleneck_width_and_tllibs_discriminator():
    model = build_model("tllib_lenet", 1, [0.5], [0.5], dropout=0.5, bottleneck=64).eval()
    f = model.features(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    assert f.shape == (4, 64)
    widths = [m.out_features for m in model.domain_head if isinstance(m, torch.nn.Linear)]
    assert widths == [1024, 1024, 1]
    drops = [m.p for m in model.feature_extractor if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert drops == [0.5, 0.5]
