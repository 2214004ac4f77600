"""Evaluation at one fixed batch shape: the same figures as one plain forward, padded
rows never counted, graphs kept per model and captured again only when stale, and
(with CUDA) captured evaluation against eager evaluation."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch

from dalab.evaluation import count_correct, evaluate, predict
from dalab.evaluation import fixed
from dalab.evaluation.validators import _forward
from dalab.models import build_model

BATCH = 16


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("dann", 3, [0.5] * 3, [0.25] * 3, 0.0).eval()


def _images(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n, 3, 28, 28), generator=gen, dtype=torch.uint8)


def _logits(model, x):
    return (model(x).float(),)


@pytest.mark.parametrize("n", [3 * BATCH, 3 * BATCH + 5, 5, 0])
def test_fixed_chunks_give_one_forwards_figures_at_one_shape(n, monkeypatch):
    model, images = _model(), _images(n)
    with torch.inference_mode():
        plain = model(images) if n else torch.empty(0, 10)
    shapes = []
    real = fixed._run

    def spy(model, forward, x, amp):
        shapes.append(tuple(x.shape))
        return real(model, forward, x, amp)

    monkeypatch.setattr(fixed, "_run", spy)
    chunks = list(fixed.fixed_chunks(model, _logits, images, BATCH, torch.device("cpu")))
    calls = math.ceil(n / BATCH)  # the fewest chunks of at most BATCH rows ...
    assert len(shapes) == calls and len(set(shapes)) <= 1  # ... every one of one shape
    rows = shapes[0][0] if shapes else 0
    assert rows <= BATCH and 0 <= calls * rows - n < max(calls, 1)  # padding < 1 a chunk
    assert [len(c) for (c,) in chunks] == [min(rows, n - s) for s in range(0, n, rows or 1)]
    logits = torch.cat([c for (c,) in chunks]) if chunks else torch.empty(0, 10)
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-4)
    assert torch.equal(predict(model, images, batch_size=BATCH), plain.argmax(1))


@pytest.mark.parametrize("n", [3 * BATCH, 3 * BATCH + 5, 5, 0])
def test_padded_rows_never_count(n):
    model, images = _model(), _images(n)
    padding_class = int(model(torch.zeros(1, 3, 28, 28, dtype=torch.uint8)).argmax())
    labels = torch.full((n,), padding_class)  # what every padded row would score
    with torch.inference_mode():
        expected = int((model(images).argmax(1) == padding_class).sum()) if n else 0
    assert int(count_correct(model, images, labels, batch_size=BATCH)) == expected
    scores = evaluate(model, images, labels, batch_size=BATCH)
    assert scores["n"] == n and sum(map(sum, scores["confusion"])) == n
    assert len(predict(model, images, batch_size=BATCH)) == n


def test_validators_forward_matches_the_plain_forward():
    model, images = _model(), _images(2 * BATCH + 3)
    feats, logits = _forward(model, images, BATCH, "cpu", cuda_graphs=True)  # CPU: eager
    with torch.inference_mode():
        f = model.features(images)
        torch.testing.assert_close(feats, f, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(logits, model.classify(f), rtol=1e-4, atol=1e-4)


def test_a_graph_is_kept_per_model_and_made_again_only_when_its_tensors_move():
    model = _model()
    made = []

    def make():
        made.append(object())
        return made[-1]

    key = ("forward", (BATCH, 3, 28, 28))
    assert fixed.graph_for(model, key, make) is made[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(_images(4)).sum().backward()
    opt.step()  # in place
    model.load_state_dict(_model().state_dict())  # copies in place
    assert fixed.graph_for(model, key, make) is made[0] and len(made) == 1
    assert fixed.graph_for(model, ("other",), make) is made[1]  # another shape
    assert fixed.graph_for(_model(), key, make) is made[2]  # another model
    first = next(model.parameters())
    first.data = first.data.clone()  # new storage: the graph would read the old one
    assert fixed.graph_for(model, key, make) is made[3]
    assert fixed.graph_for(model, key, make) is made[3]


def test_a_failed_capture_is_not_tried_again_and_graphs_go_with_their_model():
    model = _model()
    tries = []

    def fail():
        tries.append(1)

    assert fixed.graph_for(model, ("k",), fail) is None
    assert fixed.graph_for(model, ("k",), fail) is None and len(tries) == 1
    graphs, alive = fixed._GRAPHS[model], weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None  # the cache held no reference to the model
    assert all(kept is not graphs for kept in fixed._GRAPHS.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_captured_evaluation_matches_eager_and_follows_the_weights(amp):
    device = torch.device("cuda")
    model = _model().to(device)
    images = _images(3 * BATCH + 5).to(device)
    labels = torch.randint(10, (len(images),), device=device)
    tol = dict(rtol=2e-2, atol=2e-2) if amp else dict(rtol=1e-4, atol=1e-4)

    def both():
        out = []
        for graphs in (False, True):
            chunks = fixed.fixed_chunks(model, _logits, images, BATCH, device, amp, graphs)
            out.append(torch.cat([c for (c,) in chunks]))
        return out

    eager, captured = both()
    torch.testing.assert_close(captured, eager, **tol)
    (entry,) = [g for k, (_, g) in fixed._GRAPHS[model].items() if k[0] is _logits]
    assert entry is not None  # captured, not the eager fallback
    assert int(count_correct(model, images, labels, batch_size=BATCH, cuda_graphs=True)) == \
        int(count_correct(model, images, labels, batch_size=BATCH))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    opt.step()
    model.eval()
    eager_after, captured_after = both()
    assert not torch.allclose(eager_after, eager, **tol)  # the step changed the outputs
    torch.testing.assert_close(captured_after, eager_after, **tol)  # and the replay saw it
    (again,) = [g for k, (_, g) in fixed._GRAPHS[model].items() if k[0] is _logits]
    assert again is entry  # replayed, not captured again
