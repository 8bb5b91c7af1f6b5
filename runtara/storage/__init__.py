"""Storage: the driver contract, driver discovery and schema migrations."""

from __future__ import annotations
