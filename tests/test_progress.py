"""Progress lines: plain lines when stderr is not a terminal, one redrawn line (all running jobs) when it is,
silence for short jobs; and LLaMA-Factory's trainer log followed while training runs."""

from __future__ import annotations

import io
import json
import time

import pytest

from conch.jobs.progress import Progress, follow_trainer_log


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("CONCH_PROGRESS_DELAY", "0")
    monkeypatch.setenv("CONCH_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("CONCH_PROGRESS", raising=False)


def test_plain_lines_without_carriage_returns(tmp_path):
    out = io.StringIO()
    progress = Progress("train_adapter default", total=40, stream=out, board=tmp_path)
    progress.update(10, loss=1.23456)
    progress.update(20, loss=0.9)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 3
    assert lines[0].startswith("[train_adapter default] step 10/40 (25%) loss 1.235")
    assert "ETA" in lines[1] and lines[-1].startswith("[train_adapter default] step 40/40 (100%)")


def test_plain_lines_are_spaced_by_the_interval(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCH_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    progress = Progress("evaluate default", total=100, unit="item", stream=out, board=tmp_path)
    for done in range(1, 100):
        progress.update(done)
    progress.close()
    assert len(out.getvalue().splitlines()) == 2  # the first update and the final line


def one_update(board) -> str:
    """What a job that updates once and closes writes to a terminal."""
    out = Terminal()
    progress = Progress("merge_adapter default", total=3, stream=out, board=board)
    progress.update(1)
    progress.close()
    return out.getvalue()


def test_short_jobs_stay_quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCH_PROGRESS_DELAY", "60")
    assert one_update(tmp_path) == ""
    monkeypatch.setenv("CONCH_PROGRESS_DELAY", "0")
    assert one_update(tmp_path).endswith("step 3/3 (100%) 0:00 elapsed\n")


def test_terminal_redraws_one_line_with_every_running_job(tmp_path, monkeypatch):
    monkeypatch.setattr("conch.jobs.progress.TTY_REFRESH_S", 0)
    train_out, eval_out = Terminal(), Terminal()
    train = Progress("train_adapter a", total=10, stream=train_out, board=tmp_path)
    evaluate = Progress("evaluate b", total=4, unit="item", stream=eval_out, board=tmp_path)
    train.update(3, loss=2.0)
    evaluate.update(1)
    drawn = eval_out.getvalue()
    assert drawn.startswith("\r\x1b[K") and "\n" not in drawn
    # evaluate's redraw shows its own status first, then the training job's
    assert drawn.index("[evaluate b] item 1/4") < drawn.index("[train_adapter a] step 3/10")
    train.close()
    assert train_out.getvalue().endswith("\n")  # a finished job leaves its final line
    assert len(list(tmp_path.glob("*.json"))) == 1  # only evaluate is still running
    evaluate.update(2)
    assert "train_adapter" not in eval_out.getvalue().rsplit("\r", 1)[-1]


def test_off_is_silent(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCH_PROGRESS", "off")
    assert one_update(tmp_path) == ""


def test_follows_llamafactory_trainer_log(tmp_path, monkeypatch, capsys):
    log = tmp_path / "trainer_log.jsonl"
    with follow_trainer_log(log, "train_adapter default", poll_s=0.05):
        time.sleep(0.2)
        with log.open("a") as fh:
            for step in (5, 10):
                record = {
                    "current_steps": step,
                    "total_steps": 20,
                    "loss": 3.0 / step,
                    "remaining_time": "0:00:42",
                }
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                time.sleep(0.2)
            fh.write('{"current_steps": 15, "total')  # a line still being written is not read
            fh.flush()
            time.sleep(0.2)
    err = capsys.readouterr().err
    assert "[train_adapter default] step 5/20 (25%) loss 0.6" in err
    assert "step 10/20 (50%) loss 0.3" in err and "ETA 0:42" in err
    assert "15/20" not in err
    assert err.splitlines()[-1].startswith("[train_adapter default] step 20/20 (100%)")
