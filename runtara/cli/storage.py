"""``migrate``, ``drivers`` and ``prune``: tools that work on the storage itself."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

from runtara import clock, config, errors
from runtara.admin import retention
from runtara.cli import common, render
from runtara.storage import registry, selection


def migrate(argv: Sequence[str]) -> int:
    parser = common.command_parser("migrate", "Apply pending schema migrations.")
    config.add_arguments(parser, config.STORAGE_SETTINGS, config.StorageConfig)
    storage = selection.open_driver(
        config.storage_config(parser.parse_args(argv), os.environ), workers=1
    )
    try:
        applied = storage.migrate()
    finally:
        storage.close()
    if applied:
        print(f"{storage.describe()}: applied {', '.join(applied)}")
    else:
        print(f"{storage.describe()}: up to date")
    return 0


def drivers(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "drivers",
        "List the installed storage drivers, and each broken plugin with the "
        "reason it cannot be used; exit 1 if there is one.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    arguments = parser.parse_args(argv)
    found = registry.DriverRegistry().describe()
    broken = sum(info.error is not None for info in found)
    if arguments.json:
        print(
            render.to_json(
                [
                    {
                        "name": info.entry.name,
                        "distribution": info.entry.distribution,
                        "version": info.entry.version,
                        "module": info.entry.target,
                        "url_schemes": list(info.driver.url_schemes) if info.driver else [],
                        "error": info.error,
                    }
                    for info in found
                ]
            )
        )
        return 1 if broken else 0
    for info in found:
        entry = info.entry
        origin = f"{entry.distribution or '?'} {entry.version or ''}".strip()
        if info.error is None:
            schemes = ", ".join(f"{scheme}:" for scheme in info.driver.url_schemes) or "-"
            print(f"{entry.name:<12} {origin:<28} {entry.target:<40} URL schemes {schemes}")
        else:
            print(f"{entry.name:<12} {origin:<28} {entry.target:<40} BROKEN: {info.error}")
    return 1 if broken else 0


def prune(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "prune",
        "Delete finished (completed, failed, cancelled) instances with their "
        "checkpoints, events and signals. Each batch is one transaction; running and "
        "suspended instances are never touched; it is safe to interrupt.",
    )
    parser.add_argument(
        "--finished-before",
        metavar="DURATION",
        type=common.checked(config.duration),
        required=True,
        help="delete instances that finished more than this long ago (90s, 15m, 12h, 30d)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    parser.add_argument(
        "--batch-size", type=common.positive, default=500, help="instances per transaction (500)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object at the end (the ids deleted, or that would be)",
    )
    config.add_arguments(parser, config.STORAGE_SETTINGS, config.StorageConfig)
    arguments = parser.parse_args(argv)
    cutoff = clock.utc_now() - dt.timedelta(seconds=arguments.finished_before)
    chosen = config.storage_config(arguments, os.environ)
    if chosen.driver is None and chosen.database_url is None:
        raise errors.ConfigError(
            "prune works on a store: name it with --database-url (or --driver), so that "
            "no other folder's database is pruned, or created"
        )
    storage = selection.open_driver(chosen, workers=1)
    try:
        storage.migrate()
        result = retention.prune(
            storage,
            cutoff,
            batch_size=arguments.batch_size,
            dry_run=arguments.dry_run,
            on_batch=None
            if arguments.json
            else lambda ids: print(f"deleted {len(ids)} instances", flush=True),
        )
    finally:
        storage.close()
    if arguments.json:
        print(
            render.to_json(
                {
                    "dry_run": arguments.dry_run,
                    "finished_before": cutoff,
                    "deleted": result.deleted,
                }
            )
        )
        return 0
    if arguments.dry_run:
        for instance_id in result.deleted:
            print(instance_id)
        print(f"would delete {len(result.deleted)} instances finished before {cutoff.isoformat()}")
    else:
        print(f"deleted {len(result.deleted)} instances finished before {cutoff.isoformat()}")
    return 0
