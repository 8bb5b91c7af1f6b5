"""runtara-core: a durable-execution engine server for runtara workflow instances.

Importing this package has no side effects; the server starts from
:mod:`runtara.cli` (``runtara-core``) or :func:`runtara.server.app.run_server`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
