"""The benchmark's client side: K connections spread over M client processes, driven as one.

Each process (:mod:`runtara.bench.client_process`) is one asyncio loop with
its share of the connections; the group opens and closes their measured
windows together and merges what they measured. Their CPU time is measured
from outside, by process id.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import sys
import uuid
from collections.abc import Sequence

from runtara import errors
from runtara.bench.tally import LoadResult, merge

REPLY_LIMIT = 1 << 30
"""Longest line a client process may write (its result holds every latency)."""


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares, larger first."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def proportional(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, in whole numbers that add up to it."""
    whole = sum(weights)
    cuts, running = [0], 0
    for weight in weights:
        running += weight
        cuts.append(total * running // whole)
    return [after - before for before, after in itertools.pairwise(cuts)]


class ClientProcess:
    """One running client process and the lines it writes."""

    def __init__(self, number: int, process: asyncio.subprocess.Process) -> None:
        self.number = number
        self.process = process
        self.done = asyncio.Event()
        """Set when the process's window closed by itself (its count reached)."""
        self._replies: asyncio.Queue[dict | None] = asyncio.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._reading = asyncio.ensure_future(self._read())
        self._draining = asyncio.ensure_future(self._drain())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ask(self, command: str) -> dict:
        """Send a command; its answer (see :meth:`reply`)."""
        try:
            self.process.stdin.write(command.encode() + b"\n")
            await self.process.stdin.drain()
        except ConnectionError:
            pass  # it ended: reply() says how
        return await self.reply()

    async def reply(self) -> dict:
        """The next answer; raises ClientError, with the process's last words,
        when it ended instead."""
        message = await self._replies.get()
        if message is not None:
            return message
        await self._draining
        code = await self.process.wait()
        last = self._stderr[-1] if self._stderr else "no message"
        raise errors.ClientError(f"client process {self.number} ended (exit code {code}): {last}")

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def _read(self) -> None:
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if "done" in message:
                self.done.set()
            else:
                self._replies.put_nowait(message)
        self._replies.put_nowait(None)

    async def _drain(self) -> None:
        while line := await self.process.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())


class ClientGroup:
    """Client processes sharing one load: :meth:`spawn` them, then :meth:`start` it."""

    def __init__(self, members: list[ClientProcess]) -> None:
        self.members = members

    @classmethod
    async def spawn(cls, processes: int) -> ClientGroup:
        """Start ``processes`` client processes, which wait for their plan."""
        group = cls([])
        try:
            for number in range(1, processes + 1):
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "runtara.bench.client_process",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=REPLY_LIMIT,
                )
                group.members.append(ClientProcess(number, process))
        except BaseException:
            await group.abort()
            raise
        return group

    async def start(
        self,
        address: tuple[str, int],
        scenario: str,
        *,
        connections: int,
        state_size: int,
        count: int | None,
    ) -> None:
        """Give each process its share of ``connections`` (at least one each) and of
        ``count``, and wait until each has connected, prepared and started its load.
        Raises ClientError (a connection failed, a process ended) or
        OperationRefused (the server refused the preparation); the caller then
        aborts the group."""
        run = uuid.uuid4().hex[:8]
        sizes = shares(connections, len(self.members))
        counts = proportional(count, sizes) if count is not None else [None] * len(sizes)
        first = 0
        for member, size, share in zip(self.members, sizes, counts, strict=True):
            plan = {
                "host": address[0],
                "port": address[1],
                "scenario": scenario,
                "instance_ids": [f"bench-{run}-{i}" for i in range(first, first + size)],
                "state_size": state_size,
                "count": share,
            }
            first += size
            member.process.stdin.write(json.dumps(plan).encode() + b"\n")
        await asyncio.gather(*(member.process.stdin.drain() for member in self.members))
        replies = await asyncio.gather(*(member.reply() for member in self.members))
        for member, reply in zip(self.members, replies, strict=True):
            if "failed" in reply:
                kind = errors.OperationRefused if reply["refused"] else errors.ClientError
                raise kind(f"client process {member.number}: {reply['failed']}")

    @property
    def pids(self) -> list[int]:
        return [member.pid for member in self.members]

    async def totals(self) -> tuple[int, int]:
        """Successes and failures so far, warm-up included, of every process."""
        answers = await asyncio.gather(*(member.ask("totals") for member in self.members))
        return (
            sum(answer["totals"][0] for answer in answers),
            sum(answer["totals"][1] for answer in answers),
        )

    async def record(self) -> None:
        """Open every process's measured window."""
        await asyncio.gather(*(member.ask("record") for member in self.members))

    async def counted(self) -> None:
        """Return when every process's window closed by itself (``count`` mode)."""
        await asyncio.gather(*(member.done.wait() for member in self.members))

    async def finish(self) -> LoadResult:
        """Close the windows, end the processes; the merged measurement (its time
        is the longest window: they open together)."""
        answers = await asyncio.gather(*(member.ask("stop") for member in self.members))
        await asyncio.gather(*(member.process.wait() for member in self.members))
        results = [LoadResult(**answer["result"]) for answer in answers]
        return merge(results, max(result.seconds for result in results))

    async def abort(self) -> None:
        """End every process at once."""
        for member in self.members:
            member.kill()
        await asyncio.gather(
            *(member.process.wait() for member in self.members), return_exceptions=True
        )
