"""Public test kit for storage-driver authors.

``from runtara.testing.conformance import DriverConformance`` and subclass it in
your own test suite; see that module for the one fixture to provide.
"""

from __future__ import annotations
