"""Progress of long jobs in the terminal: step/total, loss, ETA; the full log still goes to logs/.

In a local run Snakemake starts each script job with the terminal's stderr inherited (snakemake.shell runs the
script with Popen and no stderr redirection), so a job's stderr is the terminal, shared with Snakemake's own
messages and with every other job running at the same time. Hence two modes:

- tty (stderr is a terminal): one line, redrawn in place at most once a second. Running jobs publish their
  status under .snakemake/conch/progress/, and every redraw shows all of them side by side, so two jobs that
  run at once do not overwrite each other's line; a finished job leaves one final line behind.
- plain (a file, a pipe, CI, a cluster log): a whole line per update, at most every CONCH_PROGRESS_INTERVAL
  seconds (default 30), and no carriage returns.

Short jobs stay quiet: nothing is printed before a job has run CONCH_PROGRESS_DELAY seconds (default 5).
CONCH_PROGRESS=off silences it, =plain or =tty forces a mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

BOARD = Path(".snakemake") / "conch" / "progress"
TTY_REFRESH_S = 1.0
STALE_S = 120.0


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "?"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


def _mode(stream) -> str:
    mode = os.environ.get("CONCH_PROGRESS", "auto").lower()
    if mode in ("off", "0", "false", "no"):
        return "off"
    if mode in ("tty", "plain"):
        return mode
    isatty = getattr(stream, "isatty", None)
    return "tty" if isatty and isatty() else "plain"


class Progress:
    """One job's progress; `update` as work is done, `close` at the end."""

    def __init__(self, label: str, total: int | None = None, unit: str = "step", stream=None, board=BOARD):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.mode = _mode(self.stream)
        self.interval = float(os.environ.get("CONCH_PROGRESS_INTERVAL", "30"))
        self.delay = float(os.environ.get("CONCH_PROGRESS_DELAY", "5"))
        self.board = Path(board) / f"{os.getpid()}-{id(self)}.json"
        self.start = time.monotonic()
        self.done, self.note, self.metrics, self.eta_s = 0, "", {}, None
        self._rate_origin: tuple[float, int] | None = None
        self._last_print, self._printed = 0.0, False
        self._lock = threading.Lock()

    def status(self) -> str:
        parts = []
        if self.total:
            parts.append(f"{self.unit} {self.done}/{self.total} ({100 * self.done // self.total}%)")
        elif self.done:
            parts.append(f"{self.unit} {self.done}")
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.metrics.items()]
        if self.note:
            parts.append(self.note)
        timing = f"{_clock(time.monotonic() - self.start)} elapsed"
        eta = self.eta_s if self.eta_s is not None else self._estimated_eta()
        if eta is not None and self.total and self.done < self.total:
            timing += f", ETA {_clock(eta)}"
        return " ".join(parts + [timing])

    def _estimated_eta(self) -> float | None:
        if not self._rate_origin or not self.total:
            return None
        t0, d0 = self._rate_origin
        if self.done <= d0:
            return None
        return (time.monotonic() - t0) / (self.done - d0) * (self.total - self.done)

    def update(self, done: int, total: int | None = None, note: str | None = None, eta_s=None, **metrics):
        with self._lock:
            if self._rate_origin is None or done < self._rate_origin[1]:
                self._rate_origin = (time.monotonic(), done)
            self.done, self.total = done, total or self.total
            self.note = note if note is not None else self.note
            self.eta_s, self.metrics = eta_s, {**self.metrics, **metrics}
            self._show(final=False)

    def refresh(self) -> None:
        """Show the elapsed time going on while no new step arrives (model loading, a slow step)."""
        with self._lock:
            self._show(final=False)

    def close(self, note: str | None = None) -> None:
        with self._lock:
            if note is not None:
                self.note = note
            self.eta_s = None
            if self.total:
                self.done = max(self.done, self.total)
            self._show(final=True)
            with contextlib.suppress(OSError):
                self.board.unlink()

    def _show(self, final: bool) -> None:
        now = time.monotonic()
        if self.mode == "off" or now - self.start < self.delay:
            return  # short jobs stay quiet, closing included
        line = f"[{self.label}] {self.status()}"
        if self.mode == "plain":
            if final or not self._printed or now - self._last_print >= self.interval:
                self._write(line + "\n")
        elif final:
            self._write("\r\x1b[K" + line + "\n")
        elif now - self._last_print >= TTY_REFRESH_S or not self._printed:
            self._publish(line)
            self._write("\r\x1b[K" + self._board_line(line))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self._last_print, self._printed = time.monotonic(), True

    def _publish(self, line: str) -> None:
        with contextlib.suppress(OSError):
            self.board.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.board.with_suffix(".tmp")
            tmp.write_text(json.dumps({"line": line}), encoding="utf-8")
            tmp.replace(self.board)

    def _board_line(self, own: str) -> str:
        """Every running job's status on one line (this one first), cut to the terminal's width."""
        lines = [own]
        for entry in sorted(self.board.parent.glob("*.json")):
            if entry == self.board:
                continue
            try:
                if time.time() - entry.stat().st_mtime > STALE_S:
                    continue
                lines.append(json.loads(entry.read_text(encoding="utf-8"))["line"])
            except (OSError, ValueError, KeyError):
                continue
        width = shutil.get_terminal_size((120, 24)).columns - 1
        text = " | ".join(lines)
        return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(clock: str | None) -> float | None:
    """LLaMA-Factory's "0:01:23" to seconds."""
    try:
        h, m, s = (int(x) for x in str(clock).split(":"))
    except ValueError:
        return None
    return h * 3600 + m * 60 + s


@contextlib.contextmanager
def _polling(poll, poll_s: float):
    """Call poll() every poll_s seconds in a thread while the block runs."""
    stop = threading.Event()

    def loop():
        while not stop.wait(poll_s):
            with contextlib.suppress(OSError):
                poll()

    thread = threading.Thread(target=loop, name="progress-poll", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _NewLines:
    """The JSON records completed in a growing file since the last call (a line still being written waits)."""

    def __init__(self, path: str | Path):
        self.path, self.offset = Path(path), 0

    def read(self) -> list[dict]:
        try:
            if self.path.stat().st_size < self.offset:  # rewritten from the start
                self.offset = 0
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        records = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records


@contextlib.contextmanager
def follow_trainer_log(path: str | Path, label: str, poll_s: float = 1.0):
    """While the block runs (a `llamafactory-cli train`), show the steps, loss and ETA that LLaMA-Factory
    appends to trainer_log.jsonl every `logging_steps`."""
    progress = Progress(label)
    progress.update(0, note="loading model and data")
    new_lines = _NewLines(path)

    def poll():
        records = new_lines.read()
        if not records:
            progress.refresh()
            return
        record = records[-1]
        metrics = {"loss": float(record["loss"])} if record.get("loss") is not None else {}
        progress.update(
            int(record.get("current_steps", 0)),
            int(record.get("total_steps") or 0) or None,
            note="",
            eta_s=_seconds(record.get("remaining_time")),
            **metrics,
        )

    try:
        with _polling(poll, poll_s):
            yield progress
    finally:
        progress.close()


@contextlib.contextmanager
def follow(measure, progress: Progress, poll_s: float = 1.0):
    """While the block runs, update `progress` with `measure()` (e.g. megabytes downloaded) every poll_s."""
    with _polling(lambda: progress.update(measure()), poll_s):
        yield progress


def trainer_callback(progress: Progress):
    """A transformers TrainerCallback that reports steps and loss to `progress` (for trainers conch runs in
    process, such as TRL's PPOTrainer; LLaMA-Factory's runs are followed through their trainer log)."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress.update(state.global_step, state.max_steps or None)

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = next(
                (v for k, v in (logs or {}).items() if k.endswith("loss") and isinstance(v, float)), None
            )
            if loss is not None:
                progress.update(state.global_step, state.max_steps or None, loss=loss)

    return ProgressCallback()
