"""An instance's stdout and stderr logs read as one: labelled lines, attempt by attempt.

The process writes each log itself, and neither records when a line was written,
so the true order of lines across the two is not known. What is known is which
attempt each line belongs to: every attempt starts with a marker line in both
logs, written after the previous attempt's process ended. So the lines come
attempt by attempt (each attempt's marker printed once); within an attempt, its
stdout lines, then its stderr lines, each log's lines in their own order.

:meth:`BothLogs.take` with ``final`` gives exactly that order, once everything
is read. Following (``final`` false), lines are given as they arrive: each read
gives the new lines of the oldest attempt first, stdout's then stderr's, and
holds a line of an attempt that the other log has not reached yet (its marker
not yet read) until it has, or until :data:`HOLD_READS` reads later.

A log that was capped starts where its older part was cut, possibly inside an
attempt: its lines before its first marker count in the attempt before that
marker, or, when it has no marker left, in the latest attempt of the other log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

from runtara.launcher import logs

LABELS = {"stdout": b"stdout| ", "stderr": b"stderr| "}
"""What starts each line of a log, to tell them apart."""
HOLD_READS = 10
"""Reads after which a line of an attempt the other log has not reached is given
anyway (the other log may never get that attempt's marker: it was removed, or its
marker could not be written)."""
MAX_LINE = 64 * 1024
"""Bytes without a newline after which they are given as a line of their own (as
they are after :data:`HOLD_READS` reads that brought nothing more)."""

Read = Callable[[str, int], tuple[bytes, int]]
"""Bytes of a log (``stdout``/``stderr``) from an offset, and the offset after them:
:func:`runtara.launcher.logs.read_from`'s answer; b"" at the end."""


@attrs.define
class _Line:
    attempt: int | None
    """None until the log's first marker is read (a log cut by a cap)."""
    text: bytes
    marker: bool = False


@attrs.define
class _Log:
    stream: str
    offset: int = 0
    partial: bytes = b""
    attempt: int | None = None
    """The attempt of the latest marker read."""
    pending: list[_Line] = attrs.Factory(list)
    quiet_reads: int = 0
    """Reads since the last that brought bytes."""

    def add(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        self.quiet_reads = 0
        if len(self.partial) > MAX_LINE:
            self.end_line()
        self._add_lines(lines)

    def end_line(self) -> None:
        """Take what came after the last newline as a whole line."""
        if self.partial:
            self._add_lines([self.partial])
            self.partial = b""

    def _add_lines(self, lines: list[bytes]) -> None:
        for text in lines:
            found = logs.MARKER.fullmatch(text)
            if found is None:
                self.pending.append(_Line(self.attempt, text))
                continue
            attempt = int(found.group(1))
            if self.attempt is None:  # what came before belongs to the attempt before
                for line in self.pending:
                    line.attempt = attempt - 1
            self.attempt = attempt
            self.pending.append(_Line(attempt, text, marker=True))


class BothLogs:
    """Both logs of one instance, read through ``read`` (see the module)."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._logs = [_Log(stream) for stream in logs.STREAMS]
        self._printed_marker: int | None = None
        self._held_reads = 0

    def take(self, final: bool = True) -> Iterator[bytes]:
        """Read what the logs received since the last call and yield the lines that
        can be given now, labelled, each ending with a newline. ``final``: the logs
        are read to their end and everything is given (a line without its newline
        too); else lines wait as the module says."""
        for log in self._logs:  # stdout first: a marker read in stderr then is in stdout too
            while True:
                data, log.offset = self._read(log.stream, log.offset)
                if not data:
                    break
                log.add(data)
            log.quiet_reads += 1
            if final or log.quiet_reads > HOLD_READS:
                log.end_line()
        latest = [log.attempt for log in self._logs if log.attempt is not None]
        for log in self._logs:  # no marker left: the latest attempt's
            for line in log.pending:
                if line.attempt is None:
                    line.attempt = max(latest, default=0)
        reached = min(latest, default=0)
        held = any(line.attempt > reached for log in self._logs for line in log.pending)
        self._held_reads = self._held_reads + 1 if held else 0
        if final or self._held_reads > HOLD_READS:
            reached, self._held_reads = None, 0
        given = []
        for order, log in enumerate(self._logs):
            keep = []
            for line in log.pending:
                if reached is None or line.attempt <= reached:
                    given.append((line.attempt, not line.marker, order, len(given), log, line))
                else:
                    keep.append(line)
            log.pending = keep
        for attempt, _, _, _, log, line in sorted(given, key=lambda each: each[:4]):
            if line.marker:
                if self._printed_marker != attempt:
                    self._printed_marker = attempt
                    yield line.text + b"\n"
            else:
                yield LABELS[log.stream] + line.text + b"\n"
