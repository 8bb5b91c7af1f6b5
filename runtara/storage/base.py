"""The storage driver contract.

A driver is a plain synchronous class registered under the entry-point group
``runtara.drivers``. The server calls it from up to ``workers`` threads at once.
A driver implements :meth:`StorageDriver.run`, whose ``work`` function receives
a :class:`Transaction`: all reads and writes made through it commit together or
not at all, and ``run`` returns only once they are durable (a reply that says
"saved" means committed). Every operation of the engine is one such run: the
operation methods of :class:`StorageDriver` run the rules of
:mod:`runtara.storage.operations`, and a driver may replace any of them with an
equivalent of its own.

``work`` runs exactly once per call of ``run``. The one exception: when the
store itself aborted the transaction ``work`` ran in (a deadlock or
serialization failure), nothing of that run was kept, and the driver may run
``work`` again from the start. Work therefore has no effect outside its
transaction (the operations take the time as an argument, so a second run
writes exactly what the first would have).

Errors: a driver raises :class:`runtara.errors.StorageUnavailable` when the
store cannot be reached (or accept writes) and :class:`runtara.errors.StorageError`
for any other storage failure, with the library's message; it never lets a
library exception escape. Exceptions raised by ``work`` itself roll the
transaction back and pass through ``run`` unchanged.

Times passed in are timezone-aware UTC datetimes chosen by the caller; a driver
stores them with at least millisecond precision and returns them as aware UTC
datetimes. Byte payloads are stored exactly (any bytes, up to 64 MiB).

Drivers are proved by the conformance kit in :mod:`runtara.testing.conformance`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import ClassVar, Concatenate, ParamSpec, TypeVar

from runtara.storage import operations
from runtara.storage.transaction import Transaction

T = TypeVar("T")
P = ParamSpec("P")

__all__ = ["StorageDriver", "Transaction"]


def _in_one_write_run(
    rule: Callable[Concatenate[Transaction, P], T],
) -> Callable[Concatenate[StorageDriver, P], T]:
    """The driver method that runs ``rule`` in one write transaction."""

    @functools.wraps(rule)
    def operation(driver: StorageDriver, *args: P.args, **kwargs: P.kwargs) -> T:
        return driver.run(lambda tx: rule(tx, *args, **kwargs))

    return operation


class StorageDriver(abc.ABC):
    """A storage backend for runtara-core.

    Construction parses the configuration and must not touch the store;
    :meth:`migrate` and :meth:`run` connect as needed.
    """

    url_schemes: ClassVar[tuple[str, ...]] = ()
    """URL schemes this driver accepts in ``--database-url`` / ``RUNTARA_DATABASE_URL``;
    a URL with one of them selects this driver when ``--driver`` is not given."""

    @abc.abstractmethod
    def __init__(self, url: str | None, *, workers: int) -> None:
        """``url`` is the configured database URL (None: the driver's default);
        ``workers`` is how many threads may call :meth:`run` at once.

        Raises :class:`runtara.errors.ConfigError` for a URL it cannot use.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """One line naming the store for the start-up log (no passwords)."""

    @abc.abstractmethod
    def migrate(self) -> list[str]:
        """Bring the schema up to date and return the names of the migrations applied.

        Safe when several processes start at once. Raises
        :class:`runtara.errors.MigrationError` if an applied migration differs from
        the one shipped (the message names it).
        """

    @abc.abstractmethod
    def run(self, work: Callable[[Transaction], T], *, write: bool = True) -> T:
        """Run ``work`` in one transaction and return its result once committed.

        With ``write=False`` the work only reads and must not call a writing
        method. If ``work`` raises, nothing it did is kept and the exception
        propagates. Storage failures raise :class:`runtara.errors.StorageError`.
        """

    def exists(self) -> bool:
        """Whether the store has been created (migrated at least once), found without
        creating or changing anything. The inspection tools ask it before reading.

        The default says True; a driver whose store can be missing says False then.
        """
        return True

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`runtara.errors.StorageUnavailable`, with the reason, unless the
        store answers and accepts writes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and threads; waits for committed work to settle."""

    def stats(self) -> dict[str, float]:
        """Counters for monitoring and benchmarks (driver-specific names)."""
        return {}

    batches_writes: ClassVar[bool] = False
    """Whether :meth:`run_batch` commits a batch's writes together, one transaction at
    a time (a store with a single writer, such as SQLite). The server then hands
    the driver its requests in batches, one batch at a time; otherwise (the
    default) it serves them concurrently, one by one."""

    def run_batch(self, work: Callable[[], T]) -> T:
        """Run ``work``, which serves several requests one after the other on the
        calling thread, each calling :meth:`run` as it would alone; return its
        result once the writes it made are committed.

        A driver may commit the batch's writes together (see
        :attr:`batches_writes`): each :meth:`run` inside keeps its contract (if
        its work raises, nothing it did is kept), and if the batch cannot be
        committed, none of its writes are kept and
        :class:`runtara.errors.StorageError` is raised. The default runs ``work``
        as it is, each :meth:`run` committing on its own.
        """
        return work()

    # --- the instance protocol's operations -------------------------------------
    # Each is one write transaction running the rule of the same name in
    # runtara.storage.operations; see there for what it does. ``registration``
    # is the registration the calling process holds (None: not known), and a
    # request of a superseded registration is refused.

    register_instance = _in_one_write_run(operations.register_instance)
    checkpoint = _in_one_write_run(operations.checkpoint)
    get_checkpoint = _in_one_write_run(operations.get_checkpoint)
    begin_sleep = _in_one_write_run(operations.begin_sleep)
    finish_sleep = _in_one_write_run(operations.finish_sleep)
    record_event = _in_one_write_run(operations.record_event)
    instance_status = _in_one_write_run(operations.instance_status)
    poll_signals = _in_one_write_run(operations.poll_signals)
    acknowledge_signal = _in_one_write_run(operations.acknowledge_signal)
    record_retry = _in_one_write_run(operations.record_retry)
