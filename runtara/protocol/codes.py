"""Codes the server answers with besides each operation's own error code.

``RpcError.code`` values shared by every operation of both protocols, and the
QUIC application error codes the server resets, stops or closes with.
"""

from __future__ import annotations

OVERLOADED = "OVERLOADED"
"""Every worker is busy and the parking queue is full: retry later (nothing was applied)."""
UNAVAILABLE = "UNAVAILABLE"
"""The server is shutting down (nothing was applied)."""
UNAUTHENTICATED = "UNAUTHENTICATED"
"""A management request without a credential of the server (or from a source that
failed too many credential checks lately)."""
PERMISSION_DENIED = "PERMISSION_DENIED"
"""A management request whose credential may only read, for an operation that acts."""
SUPERSEDED = "SUPERSEDED"
"""The instance was registered again by another process: the requesting one must stop."""
EMPTY_REQUEST = "EMPTY_REQUEST"
"""An ``RpcRequest`` whose oneof is not set."""

STREAM_REJECTED = 0x101
"""STOP_SENDING on a stream whose bytes are not a valid frame."""
STREAM_OVERLOADED = 0x102
"""RESET_STREAM when a no-reply request is refused under overload or shutdown."""
CONNECTION_EVICTED = 0x103
"""CONNECTION_CLOSE for the connection holding the most unfinished-request bytes
when the server-wide budget runs out."""
STREAM_FAILED = 0x104
"""RESET_STREAM when a request failed in a way the server could not turn into a
reply (a bug): the request is not acknowledged."""
