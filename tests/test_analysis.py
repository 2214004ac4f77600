"""Feature-space analysis: PCA, proxy A-distance, and the pipeline on a fake run folder."""

from __future__ import annotations

import json

import pytest
import torch

from dalab import analysis
from dalab.analysis import analyze_pair, find_runs, pca_2d, proxy_a_distance
from dalab.data import Split
from dalab.errors import ConfigError, DataError


def test_pca_recovers_known_axes():
    gen = torch.Generator().manual_seed(0)
    # variance 9 along (1,1,0)/√2, 1 along (0,0,1), 0.01 along (1,-1,0)/√2
    z = torch.randn(500, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.1])
    basis = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
    basis = basis / basis.norm(dim=1, keepdim=True)
    x = z @ basis + torch.tensor([5.0, -2.0, 7.0])
    p = pca_2d(x)
    assert p.shape == (500, 2)
    assert p.mean(0).abs().max() < 1e-4
    var = p.var(0)
    assert var[0] == pytest.approx(9.0, rel=0.15) and var[1] == pytest.approx(1.0, rel=0.15)
    # projections are the coordinates along the true axes, up to sign
    for k in range(2):
        corr = torch.corrcoef(torch.stack([p[:, k], z[:, k]]))[0, 1]
        assert abs(corr) > 0.999
    assert torch.equal(pca_2d(x), p)  # deterministic signs


def test_pca_exact_on_a_line():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    p = pca_2d(x)
    assert torch.allclose(p[:, 1], torch.zeros(4), atol=1e-5)
    assert torch.allclose(p[:, 0], (torch.arange(4.0) - 1.5) * 5 ** 0.5, atol=1e-5)


def test_proxy_a_distance_identical_vs_separable():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 8, generator=gen), torch.randn(400, 8, generator=gen)
    same = proxy_a_distance(a, b)
    assert 0.0 <= same["proxy_a_distance"] < 0.3
    assert same["domain_classifier_error"] > 0.42
    shifted = b + torch.cat([torch.full((1,), 8.0), torch.zeros(7)])
    apart = proxy_a_distance(a, shifted)
    assert apart["proxy_a_distance"] > 1.95 and apart["domain_classifier_error"] < 0.0125
    partial = proxy_a_distance(a, b + 1.0)  # overlapping: strictly between
    assert 0.5 < partial["proxy_a_distance"] < 1.95
    with pytest.raises(DataError, match="at least 4"):
        proxy_a_distance(a[:2], b[:2])


def test_unknown_method():
    with pytest.raises(ConfigError, match="choose one of tsne, pca"):
        analysis.embed(torch.zeros(5, 3), "umap")


# -- the pipeline on fake run folders (no data files needed) -------------------------------------

def fake_run(folder, protocol, seed):
    from dalab.models import build_model
    from dalab.training.config import make_config
    from dalab.training.runfolder import save_checkpoint

    cfg = make_config("quick", protocol=protocol, theta=0.7, seed=seed)
    torch.manual_seed(seed)
    model = build_model(cfg.network, 3, [0.5] * 3, [0.25] * 3)
    save_checkpoint(folder / "model.safetensors", model, cfg)
    (folder / "result.json").write_text(json.dumps(
        {"protocol": protocol, "test_accuracy": 0.1, "oracle_selection": False}))
    return folder


def fake_domains(cfg, data_root=None, cache_dir=None):
    gen = torch.Generator().manual_seed(2)
    labels = torch.arange(60) % 10
    src = torch.randint(0, 120, (60, 1, 28, 28), generator=gen, dtype=torch.uint8)
    tgt = torch.randint(100, 256, (60, 3, 28, 28), generator=gen, dtype=torch.uint8)
    return Split("mnist/test", src, labels), Split("mnistm/test", tgt, labels)


def test_analyze_experiment_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "load_test_domains", fake_domains)
    for protocol, seed in (("ts_tt", 0), ("tst_tt", 1)):
        (tmp_path / protocol).mkdir()
        fake_run(tmp_path / protocol, protocol, seed)
    runs, pair = find_runs([tmp_path])
    assert [r.name for r in runs] == ["ts_tt", "tst_tt"]
    assert pair == (tmp_path / "ts_tt", tmp_path / "tst_tt", tmp_path / "analysis")
    info = analyze_pair(*pair, method="pca", n=40, log=lambda *a: None)
    for run in ("ts_tt", "tst_tt"):
        out = tmp_path / run / "analysis"
        saved = json.loads((out / "analysis.json").read_text())
        assert saved["n_per_domain"] == 40 and saved["method"] == "pca"
        assert 0.0 <= saved["proxy_a_distance"] <= 2.0
        assert sum(map(sum, saved["target_confusion"])) == 60
        assert 0.0 <= saved["target_test_accuracy"] <= 1.0
        for png in ("embedding_pca.png", "confusion_target.png"):
            assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "analysis" / "before_after_pca.png").exists()
    assert info["before"]["protocol"] == "ts_tt" and info["after"]["protocol"] == "tst_tt"
    # two runs given in any order: DANN is "after"
    assert find_runs([tmp_path / "tst_tt", tmp_path / "ts_tt"])[1][:2] == (
        tmp_path / "ts_tt", tmp_path / "tst_tt")
    with pytest.raises(DataError, match="not a finished run"):
        find_runs([tmp_path / "ts_tt", tmp_path / "analysis"])


def test_tsne_embedding_shape():
    pytest.importorskip("sklearn")
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    assert analysis.embed(x, "tsne").shape == (40, 2)
