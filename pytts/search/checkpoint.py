"""The checkpoint of a search: a directory of append-only logs and one small state file, written
by a single thread in the order the search loop asks.

``history.jsonl`` is the log of trials (one `TrialRecord` per line, the source of truth for the
history), ``journal.jsonl`` the log of the searcher's own append-only state (its ``journal``),
and ``state.json`` the rest: the searcher's ``state_dict(include_logs=False)``, the loop's own
state and how many lines of each log it goes with. Nothing is rewritten per trial, so the cost
of a checkpoint does not grow with the history.

Crash safety rests on two rules. The writer thread performs writes in submission order and
stops at the first failure, so the files always hold a *prefix* of what the loop submitted. And
a log line is on disk (flushed, and fsync'ed before the state that counts it replaces the old
one) before any ``state.json`` that counts it: lines past the count (records of a tell whose
state was not saved yet, or a line torn by a kill) are dropped on load. A run killed at any
instant thus resumes from a consistent point that it had reached.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, PyttsError
from .history import TrialRecord

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
JOURNAL_FILE = "journal.jsonl"


@dataclass
class Saved:
    """What a checkpoint holds: the state and the committed lines of both logs."""

    state: dict[str, Any]
    history: list[TrialRecord]
    journal: list[dict[str, Any]]


class Checkpoint:
    """The checkpoint directory of one search (created on first write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"checkpoint {self.path} exists and is not a directory; pass a "
                              "directory path")
        self.state_path = self.path / STATE_FILE
        self.history_path = self.path / HISTORY_FILE
        self.journal_path = self.path / JOURNAL_FILE

    def load_state(self) -> dict[str, Any] | None:
        """The saved ``state.json``, or None when this checkpoint was never written."""
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"checkpoint {self.state_path} does not parse ({exc}); it was "
                              "not written by run_search or was edited") from None
        if not isinstance(state, dict) or "history_lines" not in state:
            raise ConfigError(f"checkpoint {self.state_path} is not a run_search state (or was "
                              "written by an older pytts); start a new checkpoint")
        return state

    def load(self) -> Saved | None:
        """The saved state and logs, or None when this checkpoint was never written.

        Each log is cut back to the lines the state counts (dropping a line torn by a kill and
        lines written after the last saved state; all of them when there is no state yet), so
        the next append continues a clean file.
        """
        state = self.load_state()
        if state is None:
            for path in (self.history_path, self.journal_path):
                if path.exists():
                    _committed_lines(path, 0)
            return None
        names = state["searcher"]["model_names"]
        lines = _committed_lines(self.history_path, int(state["history_lines"]))
        history = [TrialRecord.from_dict(_parse(line, self.history_path), names)
                   for line in lines]
        journal = [_parse(line, self.journal_path)
                   for line in _committed_lines(self.journal_path, int(state["journal_lines"]))]
        return Saved(state, history, journal)

    @staticmethod
    def read_history(path: str | os.PathLike[str],
                     model_names: Sequence[str] | None = None) -> list[TrialRecord]:
        """The complete records of a ``history.jsonl`` file (or of a checkpoint directory's),
        read only (a torn last line is skipped).

        ``model_names`` is the searcher's pool in pool order; by default the one saved in the
        ``state.json`` beside the file.
        """
        file = Path(path)
        if file.is_dir():
            file = file / HISTORY_FILE
        if model_names is None:
            state = Checkpoint(file.parent).load_state()
            if state is None:
                raise ConfigError(f"no {STATE_FILE} beside {file}: pass model_names (the "
                                  "searcher's pool) to read its history")
            model_names = state["searcher"]["model_names"]
        lines = file.read_bytes().split(b"\n")[:-1]
        return [TrialRecord.from_dict(_parse(line, file), model_names) for line in lines]

    def writer(self) -> CheckpointWriter:
        """A writer for this checkpoint (one per run; close it when the run ends)."""
        return CheckpointWriter(self)


def _committed_lines(path: Path, count: int) -> list[bytes]:
    """The first ``count`` lines of ``path``; the file is truncated after them."""
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")[:-1]  # the last piece is empty or a torn line
    if len(lines) < count:
        raise ConfigError(f"checkpoint log {path} has {len(lines)} complete lines but its "
                          f"{STATE_FILE} counts {count}: the log was truncated or edited")
    size = sum(len(line) + 1 for line in lines[:count])
    if size != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())
    return lines[:count]


def _parse(line: bytes, path: Path) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"checkpoint log {path} has a line that does not parse ({exc}); it "
                          "was edited") from None


class CheckpointWriter:
    """The single thread that writes one checkpoint, in submission order.

    The search loop only serialises (small) JSON and submits; opening, writing, fsync and
    ``os.replace`` happen on the thread. A state superseded by a later one still in the queue
    is skipped (the later one implies it). After a failed write nothing more is written (the
    files stay a prefix of the submissions) and the next call on the writer raises.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pytts-checkpoint")
        self._last: Future[None] | None = None
        self._latest_state = 0
        self._error: BaseException | None = None
        self._handles: dict[Path, IO[bytes]] = {}
        self._unsynced: set[Path] = set()

    # ------------------------------------------------------------- called on the event loop
    def append_history(self, records: Sequence[TrialRecord]) -> None:
        """Append records to ``history.jsonl``."""
        if records:
            self._submit(self._append, self.checkpoint.history_path,
                         _jsonl([r.to_dict() for r in records]))

    def append_journal(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append searcher journal entries to ``journal.jsonl``."""
        if entries:
            self._submit(self._append, self.checkpoint.journal_path, _jsonl(entries))

    def save_state(self, state: dict[str, Any]) -> None:
        """Replace ``state.json`` (atomically, after the log lines submitted before it)."""
        self._latest_state += 1
        self._submit(self._save, self._latest_state, json.dumps(state).encode())

    async def flush(self) -> None:
        """Wait until everything submitted so far is written; raise if a write failed."""
        if self._last is not None:
            await asyncio.wrap_future(self._last)
        self._raise_if_failed()

    async def close(self) -> None:
        """Flush, close the files and stop the thread."""
        try:
            await self.flush()
        finally:
            self._executor.submit(self._close_files)
            await asyncio.to_thread(self._executor.shutdown)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._raise_if_failed()
        self._last = self._executor.submit(self._guarded, fn, *args)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise PyttsError(f"writing the checkpoint {self.checkpoint.path} failed: "
                             f"{self._error}") from self._error

    # ------------------------------------------------------------- on the writer thread
    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        if self._error is not None:
            return
        try:
            fn(*args)
        except Exception as exc:  # kept for the loop, which raises it on its next call
            self._error = exc

    def _append(self, path: Path, data: bytes) -> None:
        handle = self._handles.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._handles[path] = open(path, "ab")
        handle.write(data)
        handle.flush()
        self._unsynced.add(path)

    def _save(self, number: int, data: bytes) -> None:
        if number != self._latest_state:
            return
        for path in self._unsynced:
            os.fsync(self._handles[path].fileno())
        self._unsynced.clear()
        path = self.checkpoint.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _close_files(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


def _jsonl(entries: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in entries).encode()
