"""A federation's progress as it happens: one event per step, for a person watching and for the launcher.

The ServerApp runs in a process Flower starts on the SuperLink's machine, so whoever started
the run (``hefed federate``, an operator) cannot see inside it. With a ``progress`` path in
the run config the ServerApp appends one JSON object per line to that file as the run goes
(:class:`ProgressLog`): SuperNodes connected, each factory's ready answer, each reply
(bundle received, or the error), each factory missing and why, each masked round, the
aggregate or the failure. :class:`ProgressFollower` reads the lines appended since its last
look; :class:`~hefed.flower.LocalFederation` adds its own events (SuperLink listening, each
SuperNode started and connected, run submitted) and hands all of them to one callback.

A file, not Flower's log: the log is reached only through ``flwr log`` (a process start per
look, its text format Flower's own), while a local file of whole JSON lines is cheap to poll,
has a format hefed owns, and survives a ServerApp that dies (every line is written and closed
at once). Writing it never fails a run: an unwritable progress file is logged and given up.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: Longest progress line kept (a longer one is cut; the report has the full text).
MAX_MESSAGE_CHARS = 1000
#: Longest file the follower reads in one look.
MAX_READ_BYTES = 1 << 20


def count(n: int, one: str, many: str) -> str:
    """``"1 factory"``, ``"3 factories"``."""
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a federation: what happened, in one line, and whom it concerns.

    ``step`` names the step (``superlink``, ``supernode``, ``connected``, ``submitted``, ``nodes``,
    ``asked``, ``ready``, ``reply``, ``missing``, ``round``, ``note``, ``dropout`` (a simulated
    drop-out: the launcher stopped a SuperNode), ``done``, ``failed``); ``ok`` says
    whether it went well (``None``: neither); ``factory`` and ``round`` say whom and which
    masked round it concerns; ``seconds`` counts from the start of whoever wrote it; ``phase``
    names the masked round's step a reply or a drop-out belongs to (``ready``, ``join``,
    ``contribute``, ``reveal``), so a watcher (the launcher's simulated drop-outs) need not parse
    the message.
    """

    step: str
    message: str
    factory: str | None = None
    ok: bool | None = None
    round: int | None = None
    seconds: float | None = None
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"step": self.step, "message": self.message, "factory": self.factory, "ok": self.ok,
               "round": self.round, "seconds": self.seconds}
        return {**out, "phase": self.phase} if self.phase is not None else out

    @classmethod
    def from_dict(cls, obj: object) -> ProgressEvent | None:
        """The event a progress line holds, or ``None`` for a line that is not one (skipped, never an error)."""
        if not isinstance(obj, dict):
            return None
        step, message = obj.get("step"), obj.get("message")
        if not isinstance(step, str) or not isinstance(message, str):
            return None
        factory, ok, number, seconds = obj.get("factory"), obj.get("ok"), obj.get("round"), obj.get("seconds")
        phase = obj.get("phase")
        return cls(step, message[:MAX_MESSAGE_CHARS], factory if isinstance(factory, str) else None,
                   ok if isinstance(ok, bool) else None,
                   number if isinstance(number, int) and not isinstance(number, bool) else None,
                   float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None,
                   phase if isinstance(phase, str) else None)


#: Whoever is told about each event (``hefed federate`` prints it).
ProgressCallback = Callable[[ProgressEvent], None]


class ProgressLog:
    """The ServerApp's side: append each event as one JSON line to ``path`` (nothing when ``path`` is empty).

    The file is started afresh (the run's settings have checked it may be replaced), and each
    line is written and closed at once, so a reader never waits for a buffer. If the file
    cannot be written, ``on_error`` is told once and the log is given up: progress is a
    courtesy, never a reason for a run to fail.
    """

    def __init__(self, path: str | os.PathLike[str], on_error: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if str(path) else None
        self.on_error = on_error
        self.started = time.monotonic()
        if self.path is not None:
            self._write(b"", "w")

    def __call__(self, event: ProgressEvent) -> None:
        if self.path is None:
            return
        if event.seconds is None:
            event = replace(event, seconds=round(time.monotonic() - self.started, 3))
        line = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        self._write(line.encode("utf-8"), "a")

    def _write(self, data: bytes, mode: str) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, mode + "b") as handle:
                handle.write(data)
        except OSError as exc:
            path, self.path = self.path, None
            if self.on_error is not None:
                self.on_error(f"cannot write the progress file {path}: {exc}; no more progress is written")


class ProgressFollower:
    """The launcher's side: the events appended to a progress file since the last :meth:`read`.

    Only whole lines are read (a line still being written waits for the next look); a
    missing file is no event yet; a line that is not an event is skipped.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read(self) -> list[ProgressEvent]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(MAX_READ_BYTES)
        except OSError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        events = []
        for line in lines:
            try:
                event = ProgressEvent.from_dict(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                event = None
            if event is not None:
                events.append(event)
        return events
