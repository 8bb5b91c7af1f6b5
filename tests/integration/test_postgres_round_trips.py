"""Round trips to PostgreSQL, counted on the wire by a proxy between the driver
and the server: each instance-protocol operation is one, and the driver's own
count (``stats()["round_trips"]``) agrees with the wire.

psycopg's own upkeep of prepared statements is kept out of the measured
calls: it prepares a statement on its sixth run on a connection (the pool
hands its connections out in turn, so each operation first runs six times on
every one of them), which the measured transactions do not reach.
"""

from __future__ import annotations

import datetime as dt
import selectors
import socket
import threading

import pytest
from psycopg import conninfo

from runtara import errors
from runtara.drivers.postgres import PostgresDriver
from runtara.records import EventType, InstanceStatus, InstanceUpdate, SignalType
from tests.support import wait_for

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
SECOND = dt.timedelta(seconds=1)
WARM_UP = 6 * 3
"""Runs that prepare a statement on each of the pool's connections (at most three)."""


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class CountingProxy:
    """Forwards TCP connections to PostgreSQL on a thread and counts round trips:
    a client sending after the server spoke (or for the first time) starts one."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.round_trips = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._client_spoke_last: dict[socket.socket, bool] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(0.05):
                if key.fileobj is self._listener:
                    client, _ = self._listener.accept()
                    server = socket.create_connection(self._upstream)
                    self._selector.register(client, selectors.EVENT_READ, (server, client))
                    self._selector.register(server, selectors.EVENT_READ, (client, client))
                    self._client_spoke_last[client] = False
                    continue
                source, (peer, client) = key.fileobj, key.data
                if source.fileno() == -1:  # closed with its peer earlier in this batch
                    continue
                try:
                    data = source.recv(1 << 16)
                    if data:
                        from_client = source is client
                        if from_client and not self._client_spoke_last[client]:
                            self.round_trips += 1
                        self._client_spoke_last[client] = from_client
                        peer.sendall(data)
                except OSError:  # an end reset: the connection is over
                    data = b""
                if not data:
                    for end in (source, peer):
                        self._selector.unregister(end)
                        end.close()
                    del self._client_spoke_last[client]

    def close(self) -> None:
        self._stopped = True
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


@pytest.fixture
def proxied(postgres_url):
    """A driver with one pooled connection, talking to PostgreSQL through the proxy."""
    params = conninfo.conninfo_to_dict(postgres_url)
    proxy = CountingProxy(params["host"], int(params["port"]))
    driver = PostgresDriver(conninfo.make_conninfo(postgres_url, port=proxy.port), workers=1)
    driver.migrate()
    driver.run(lambda tx: None)  # opens the pool, which may grow by a connection or two

    def steady():
        stats = driver.stats()
        return stats["pool_pool_size"] == stats["pool_pool_available"]

    wait_for(steady)
    yield driver, proxy
    driver.close()
    proxy.close()


def costs(driver, proxy, call) -> tuple[int, int]:
    """Round trips of ``call``: on the wire, and as the driver counted them."""
    wire, counted = proxy.round_trips, driver.stats()["round_trips"]
    call()
    return proxy.round_trips - wire, driver.stats()["round_trips"] - counted


def test_each_instance_operation_is_one_round_trip(proxied):
    driver, proxy = proxied
    driver.register_instance("i", "t", None, T0)
    for n in range(WARM_UP + 1):
        driver.register_instance(f"sleeper-{n}", "t", None, T0)

    def operations(n: int) -> dict:
        return {
            "register_instance": lambda: driver.register_instance(f"new-{n}", "t", None, at(n)),
            "checkpoint": lambda: driver.checkpoint("i", f"cp-{n}", b"state", at(n)),
            "get_checkpoint": lambda: driver.get_checkpoint("i", f"cp-{n}", at(n)),
            "poll_signals": lambda: driver.poll_signals("i", f"cp-{n}", at(n)),
            "record_event": lambda: driver.record_event("i", EventType.HEARTBEAT, b"", at(n)),
            "record_retry": lambda: driver.record_retry("i", "step", n, "boom", at(n)),
            "acknowledge_signal": lambda: driver.acknowledge_signal(
                "i", SignalType.PAUSE, True, at(n)
            ),
            "instance_status": lambda: driver.instance_status("i", at(n)),
            "begin_sleep": lambda: driver.begin_sleep(f"sleeper-{n}", SECOND, "", b"", at(n)),
            "finish_sleep": lambda: driver.finish_sleep(f"sleeper-{n}", at(n) + SECOND, at(n)),
        }

    measured = {}
    for name in operations(0):
        for n in range(WARM_UP):
            operations(n)[name]()
        measured[name] = costs(driver, proxy, operations(WARM_UP)[name])
    assert measured == dict.fromkeys(measured, (1, 1))


def test_the_driver_counts_what_transactions_send(proxied):
    driver, proxy = proxied

    class Refused(Exception):
        pass

    def refused(tx):
        tx.get_instance("i")
        raise Refused

    def claim(tx):
        for name in ("a", "b"):
            tx.create_instance(name, "t", T0)
            tx.update_instance(
                name, InstanceUpdate(status=InstanceStatus.SUSPENDED, sleep_until=T0)
            )
        return tx.list_due_sleepers(due_before=T0, limit=5)

    measured = [
        costs(driver, proxy, call)
        for call in (
            lambda: pytest.raises(Refused, driver.run, refused),
            lambda: driver.run(lambda tx: tx.create_instance("i", "t", T0)),
            lambda: driver.run(lambda tx: (tx.get_instance("i"), tx.list_events("i")), write=False),
            lambda: driver.run(claim),
        )
    ]
    # BEGIN, the statements, COMMIT or ROLLBACK
    assert measured == [(3, 3), (3, 3), (4, 4), (7, 7)]


def test_refusals_cost_one_round_trip_each(proxied):
    # A statement prepared on its first run, and refused, would cost two (the
    # preparation, then the run) and stay prepared in the session, forgotten.
    driver, proxy = proxied

    def refused():
        with pytest.raises(errors.InstanceNotFound):
            driver.checkpoint("ghost", "cp", b"s", T0)

    assert [costs(driver, proxy, refused) for _ in range(WARM_UP)] == [(1, 1)] * WARM_UP
