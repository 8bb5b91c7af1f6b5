"""Built-in storage drivers (installed as ``runtara.drivers``).

They register through the ``runtara.drivers`` entry-point group exactly as a
third-party package would; nothing in the core imports them by name.
"""
