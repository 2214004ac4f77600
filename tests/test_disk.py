"""Output that cannot be written: a file where a folder should be, a full disk.

Each case ends in a clear DalabError naming the path and leaves no partial files.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from dalab import paths
from dalab.cli import main
from dalab.errors import DalabError, DataError, WriteError
from dalab.training import checkpoint, make_config, train

TINY = dict(max_train=256, max_eval=100, batch_size=32, epochs=2, threads=1, device="cpu",
            protocol="ts_ts")


def _cfg(data_root, cache_dir, **kw):
    return make_config("quick", **{**TINY, "data_root": str(data_root),
                                   "cache_dir": str(cache_dir), **kw})


def _full_disk_on(monkeypatch, name_start: str) -> None:
    """``os.replace`` onto a file whose name starts with ``name_start`` fails: disk full."""
    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst).name.startswith(name_start):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(paths.os, "replace", replace)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_atomic_writes_fail_cleanly(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=f"cannot create the folder {blocker}/sub: {blocker} "
                       "is a file, not a folder"):
        paths.write_text_atomic(blocker / "sub" / "a.txt", "hello")
    _full_disk_on(monkeypatch, "a.txt")
    with pytest.raises(WriteError, match=r"cannot write .*a.txt: No space left on device "
                       r"\(the disk is full\)"):
        paths.write_text_atomic(tmp_path / "a.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_run_folder_in_place_of_a_file(data_root, cache_dir, tmp_path, capsys):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    with pytest.raises(WriteError, match=f"{blocker} is a file, not a folder"):
        train(_cfg(data_root, cache_dir), blocker / "inner", log=lambda s: None)
    code = main(["train", "--out", str(blocker), "--max-train", "10", "--epochs", "1",
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir)])
    assert code == 2
    assert f"error: cannot create the folder {blocker}" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_full_disk_while_checkpointing_keeps_the_last_good_state(
        data_root, cache_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _full_disk_on(monkeypatch, "epoch-0002")
    with pytest.raises(DalabError, match=r"cannot write .*epoch-0002.safetensors: No space "
                       r"left on device \(the disk is full\)"):
        train(_cfg(data_root, cache_dir), out, log=lambda s: None)
    assert _leftovers(out) == [] and not (out / "result.json").exists()
    assert [p.name for p in checkpoint.checkpoints(out)] == ["epoch-0001.safetensors"]
    monkeypatch.undo()
    lines = []
    result = train(_cfg(data_root, cache_dir), out, log=lines.append)
    assert lines[0].startswith(f"resuming {out} from epoch 1") and result.epochs == 2


def test_full_disk_while_writing_the_result(data_root, cache_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _full_disk_on(monkeypatch, "result.json")
    with pytest.raises(WriteError, match="result.json: No space left"):
        train(_cfg(data_root, cache_dir, epochs=1), out, log=lambda s: None)
    assert _leftovers(out) == [] and not (out / "result.json").exists()
    monkeypatch.undo()  # the checkpoint of the last epoch is kept: only the end is redone
    lines = []
    train(_cfg(data_root, cache_dir, epochs=1), out, log=lines.append)
    assert lines[0].startswith(f"resuming {out} from epoch 1")
    assert (out / "result.json").is_file() and not checkpoint.checkpoints(out)


def test_full_disk_in_the_mnistm_cache(tmp_path, monkeypatch):
    from dalab.data import mnistm

    class Mnist:  # a few fake digits: the cache writing is what is tested
        train_images = test_images = np.zeros((4, 28, 28), np.uint8)
        train_labels = test_labels = np.zeros(4, np.uint8)
        md5 = "x"

    monkeypatch.setattr(mnistm, "read_mnist", lambda *a, **k: Mnist)
    monkeypatch.setattr(mnistm, "read_photo_files", lambda *a, **k: [])
    monkeypatch.setattr(mnistm, "decode_photos", lambda *a, **k: [np.zeros((40, 40, 3),
                                                                             np.uint8)])
    monkeypatch.setattr(mnistm, "photos_md5", lambda files: "y")
    _full_disk_on(monkeypatch, "mnistm_")
    with pytest.raises(DataError, match=r"cannot write the MNIST-M cache .*the disk is full"):
        mnistm.generate_mnistm(tmp_path, tmp_path / "cache")
    folder = tmp_path / "cache" / "mnistm"
    assert [p.suffix for p in folder.iterdir()] == [".lock"]  # no npz, sidecar or temp file


def test_export_in_place_of_a_file_or_on_a_full_disk(tmp_path, monkeypatch):
    import torch

    from dalab.data import Split
    from dalab.data.export import export_split

    split = Split("toy/test", torch.zeros(3, 3, 28, 28, dtype=torch.uint8),
                  torch.tensor([0, 1, 2]), ("a", "b", "c"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=f"{blocker} is a file, not a folder"):
        export_split(split, blocker / "out", "test")
    real = Path.write_bytes

    def full_after_two(self, data):
        if self.name == "00000002.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_after_two)
    out = tmp_path / "out"
    with pytest.raises(WriteError, match=f"cannot write the export {out / 'test'}: No space "
                       "left on device"):
        export_split(split, out, "test")
    assert list(out.iterdir()) == []  # no image folder, labels file or temporary folder
    monkeypatch.undo()
    assert len(list(export_split(split, out, "test").iterdir())) == 3
