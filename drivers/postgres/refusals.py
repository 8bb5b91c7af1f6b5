"""The refusals of the server-side operations, back as the engine's exceptions.

The functions of migration 0006 refuse a request by raising an error with one
of the SQLSTATEs below, the engine's message, and the arguments of the
engine's exception as a JSON array in DETAIL. :func:`refusal` builds that
exception from them, so a refused call raises the same class, with the same
message and attributes, as the rule in :mod:`runtara.storage.operations`.
"""

from __future__ import annotations

import json

import psycopg

from runtara import errors

BY_SQLSTATE: dict[str, type[errors.RequestError]] = {
    "RT001": errors.InstanceNotFound,
    "RT002": errors.InvalidInstanceState,
    "RT003": errors.InstanceFinished,
    "RT004": errors.Superseded,
    "RT005": errors.RegistrationRefused,
}


def refusal(error: psycopg.Error) -> errors.RequestError | None:
    """The engine's exception for a refusal raised by a server-side operation;
    None for any other database error."""
    refused = BY_SQLSTATE.get(error.sqlstate or "")
    if refused is None:
        return None
    return refused(*json.loads(error.diag.message_detail))
