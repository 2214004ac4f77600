"""Progress output: a live bar on a terminal, plain periodic lines otherwise, and the
--quiet/--verbose options."""

from __future__ import annotations

import dataclasses
import io

import pytest

from dalab import progress
from dalab.cli import main


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def normal_verbosity():
    progress.set_verbosity(progress.NORMAL)
    yield
    progress.set_verbosity(progress.NORMAL)


def test_plain_lines_when_not_a_terminal_show_rate_and_time_left():
    out = io.StringIO()
    with progress.progress(4, "train tst_tt epoch 1/2", stream=out, interval=0) as bar:
        for _ in range(4):
            bar.update()
            bar.set_figures(loss=0.5)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()  # no bar redraws in a log file
    assert lines[0].startswith("train tst_tt epoch 1/2: 1/4 steps (25%)")
    assert "steps/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("train tst_tt epoch 1/2: 4/4 steps (100%)")
    assert "loss=0.5" in lines[-1]
    assert len(lines) == 4  # the last line once, not again on closing


def test_closing_prints_the_last_line_when_it_was_not_shown():
    out = io.StringIO()
    with progress.progress(4, "work", stream=out, interval=0) as bar:
        bar.update(4)
        bar.set_figures(loss=0.25)  # new figures after the last line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "loss" not in lines[0] and "loss=0.25" in lines[1]


def test_plain_lines_are_periodic_not_per_step():
    out = io.StringIO()
    with progress.progress(1000, "work", stream=out, interval=3600) as bar:
        for _ in range(1000):
            bar.update()
    assert out.getvalue() == ""  # shorter than one interval: nothing to report


def test_terminal_gets_a_live_bar_with_rate_and_time_left():
    term = Terminal()
    with progress.progress(50, "train tst_tt epoch 1/2", stream=term, leave=True) as bar:
        for _ in range(50):
            bar.update()
        bar.set_figures(loss=0.25)
    text = term.getvalue()
    assert "\r" in text  # redrawn in place
    assert "train tst_tt epoch 1/2" in text and "50/50" in text
    assert "step/s" in text or "s/step" in text  # the rate
    assert "<" in text  # tqdm's elapsed<left
    assert "loss=0.25" in text


def test_quiet_shows_nothing_and_verbose_adds_debug_lines(capsys):
    term = Terminal()
    progress.set_verbosity(progress.QUIET)
    with progress.progress(5, "work", stream=term) as bar:
        bar.update(5)
    progress.info("hello")
    assert term.getvalue() == "" and capsys.readouterr().out == ""
    progress.set_verbosity(progress.VERBOSE)
    progress.debug("detail")
    progress.info("hello")
    assert capsys.readouterr().out == "detail\nhello\n"


def test_a_silenced_sweep_point_reports_progress_as_lines_in_its_log(tmp_path, capsys):
    import json

    from dalab.sweep.points import run_point
    from dalab.training import make_config

    def train(cfg, out, log):
        with progress.progress(3, "train ts_ts epoch 1/1", interval=0) as bar:
            bar.update(3)
        progress.info("a message")  # the point's messages stay off the sweep's console
        log("epoch 1/1 done")
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps({"test_accuracy": 0.5}))

    log_path = tmp_path / "logs" / "point.log"
    config = dataclasses.asdict(make_config("quick"))
    assert run_point(config, str(tmp_path / "run"), str(log_path), train) == {
        "test_accuracy": 0.5}
    lines = log_path.read_text().splitlines()
    assert lines[0].startswith("train ts_ts epoch 1/1: 3/3 steps (100%)")
    assert lines[-1] == "epoch 1/1 done"
    assert capsys.readouterr() == ("", "")
    assert progress.verbosity() == progress.NORMAL  # as before the point
    with progress.progress(2, "after", interval=0) as bar:  # bars go to stderr again
        bar.update(2)
    assert capsys.readouterr().err.startswith("after: 2/2")


def test_track_iterates_and_reports():
    out = io.StringIO()
    assert list(progress.track(range(3), "points", unit="point", stream=out,
                               interval=0)) == [0, 1, 2]
    assert "3/3 points (100%)" in out.getvalue()


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_are_global_options(where, capsys):
    argv = ["config", "--preset", "quick"]
    argv = ["--quiet", *argv] if where == "before" else [*argv, "--quiet"]
    assert main(argv) == 0
    assert progress.verbosity() == progress.QUIET
    assert "optimizer" in capsys.readouterr().out  # results are still printed
    assert main(["-q", "-v", "config"]) == 2
    assert "exclude each other" in capsys.readouterr().err
