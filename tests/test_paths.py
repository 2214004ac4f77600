import os
import signal
import subprocess
import sys

import pytest

from dalab import paths


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DALAB_DATA", str(tmp_path / "env"))
    assert paths.resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    assert paths.resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("DALAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.resolve_data_root(None) == tmp_path / "xdg" / "dalab"


def test_cache_dir_falls_back_when_root_read_only(monkeypatch, tmp_path):
    monkeypatch.delenv("DALAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "root"
    root.mkdir()
    assert paths.resolve_cache_dir(root) == root / "dalab-cache"
    root.chmod(0o555)
    try:
        if paths._writable(root / "dalab-cache"):
            pytest.skip("running as a user who can write anywhere")
        assert paths.resolve_cache_dir(root) == tmp_path / "xdg" / "dalab" / "cache"
    finally:
        root.chmod(0o755)
    assert paths.resolve_cache_dir(root, tmp_path / "c") == tmp_path / "c"


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    paths.write_json_atomic(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with paths.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_cli_version_and_help(capsys):
    from dalab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "dalab" in capsys.readouterr().out


SLOW_WRITER = """
import sys, time
from pathlib import Path
import dalab.cli.config as command
from dalab.cli import main
from dalab.paths import atomic_path

def write_slowly(args):
    with atomic_path(Path(sys.argv[1]) / "store.npy") as tmp:
        tmp.write_bytes(b"x" * 100_000)
        print("writing", flush=True)
        time.sleep(60)

command.run = write_slowly
sys.exit(main(["config"]))
"""


def test_sigterm_removes_the_temporary_file_and_exits_with_a_message(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        assert len(list(tmp_path.iterdir())) == 1  # the hidden temporary file
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "dalab config: terminated (SIGTERM)" in err
    assert list(tmp_path.iterdir()) == []
