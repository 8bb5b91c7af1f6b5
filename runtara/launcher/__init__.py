"""Running instances: their launch specifications, processes, logs and recovery.

:mod:`runtara.launcher.spec` is what ``runtara-core start`` stores,
:mod:`runtara.launcher.logs` where each instance's output goes,
:mod:`runtara.launcher.processes` how one attempt is spawned and watched,
:mod:`runtara.launcher.containment` how everything an attempt started is found
and ended (through :mod:`runtara.launcher.cgroups` where it can), and
:mod:`runtara.launcher.launcher` the loop that claims instances through the
database and keeps them running.
"""

from __future__ import annotations
