"""The QUIC server: an event-loop thread that moves bytes, and a bounded worker pool."""

from __future__ import annotations
