"""``python -m runtara`` is the same as the ``runtara-core`` command."""

from __future__ import annotations

import sys

from runtara import cli

if __name__ == "__main__":
    sys.exit(cli.main())
