"""How runtara-core's processes log: text for people, or one JSON object a line.

The server configures logging once at start (:func:`configure`). Log calls
give the context of their message as ``extra=``: :data:`CONTEXT_FIELDS` names
the fields a formatter renders (the instance, its tenant, the operation of the
request, and the lifecycle change or decision the line reports), so that a
log collector can filter on them without parsing messages.

A server of several processes (``--processes``) names the process in each
line its server processes write: ``[process N]`` in text, ``"process": N``
in JSON; the parent's lines, about the whole server, name none.

aioquic logs every handshake at INFO under the logger ``quic``: the server
keeps that logger at WARNING unless its level is ``debug``, and clients (the
SDK, the tools) keep it at ERROR (:func:`quiet_aioquic_for_clients`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

CONTEXT_FIELDS = ("instance_id", "tenant", "operation", "action")
"""The ``extra=`` keys a log call may give: ``instance_id``, ``tenant``,
``operation`` (the request's operation, such as ``register_instance``) and
``action`` (what happened: ``registered``, ``completed``, ``refused`` ...)."""

AIOQUIC_LOGGER = "quic"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO 8601 UTC, milliseconds), ``level``
    (lower case), ``logger``, ``message``, the :data:`CONTEXT_FIELDS` the record
    carries, ``process`` (the server process's number) when given one, and
    ``exception`` (the formatted traceback) when it has one."""

    def __init__(self, process: int | None = None) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process is not None:
            entry["process"] = self.process
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["exception"] = self.formatStack(record.stack_info)
        # default=str: a message argument or field JSON cannot encode still
        # gives a line rather than an error in the logging machinery.
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def text_format(process: int | None = None) -> str:
    if process is None:
        return TEXT_FORMAT
    return TEXT_FORMAT.replace("%(name)s:", f"%(name)s [process {process}]:")


def configure(level: str, log_format: str = "text", process: int | None = None) -> None:
    """Send the process's log records to stderr at ``level`` (debug, info,
    warning or error) in ``log_format`` (``text`` or ``json``), replacing any
    handler configured before; aioquic's records only from WARNING up, unless
    ``level`` is debug. ``process``: the number of this server process of
    several, named in every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(process) if log_format == "json" else logging.Formatter(text_format(process))
    )
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
    logging.getLogger(AIOQUIC_LOGGER).setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )


def quiet_aioquic_for_clients() -> None:
    """Keep aioquic's logger at ERROR, unless the application set its level.

    On a client's connection everything aioquic warns about (a certificate
    that does not verify, a protocol error) ends the connection, and the
    client's own error reports it: the warning would only repeat it, and the
    INFO lines of every handshake are noise in a workflow's or a tool's output.
    """
    aioquic = logging.getLogger(AIOQUIC_LOGGER)
    if aioquic.level == logging.NOTSET:
        aioquic.setLevel(logging.ERROR)
