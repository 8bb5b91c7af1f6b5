"""The operations of both protocols as plain blocking functions.

Each handler takes the decoded request and the :class:`Services` it may use,
runs one storage operation and returns the reply message; none knows about
sockets, threads or the event loop. :mod:`runtara.handlers.dispatch` maps each
``RpcRequest`` oneof to its handler.
"""

from __future__ import annotations
