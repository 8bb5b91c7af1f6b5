"""Schema migrations of the built-in drivers, one folder per SQL dialect.

Installed as ``runtara.migrations``; read with :mod:`runtara.storage.migrations`.
Files are numbered ``NNNN_description.sql`` and never edited once released: a
change is a new file.
"""
