"""Pages of the instance list, by cursor: each page starts where the last one ended.

A page is read from the index in the list's order (newest ``created_at``
first, ties by ``instance_id``) from the position of a cursor, the last row
of the page before: its cost does not grow with how deep the page is, as an
OFFSET would. The count that goes with a page may be capped (``1,000+``), so
that a page does not count the whole table either.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import attrs

from runtara import errors, records

if TYPE_CHECKING:  # the contract refers to the cursor: no import back at run time
    from runtara.storage import base

SEPARATOR = "/"


@attrs.frozen
class InstanceCursor:
    """Where a page ends: the ``created_at`` and ``instance_id`` of its last row."""

    created_at: dt.datetime
    instance_id: str

    @classmethod
    def after(cls, instance: records.Instance) -> InstanceCursor:
        return cls(instance.created_at, instance.instance_id)

    def encode(self) -> str:
        """The cursor as text: ``<created_at, ISO 8601 UTC>/<instance_id>``."""
        when = self.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        return f"{when}{SEPARATOR}{self.instance_id}"

    @classmethod
    def decode(cls, text: str) -> InstanceCursor:
        """The cursor :meth:`encode` wrote; raises OperationRefused for other text."""
        when, separator, instance_id = text.partition(SEPARATOR)
        try:
            created_at = dt.datetime.fromisoformat(when)
        except ValueError:
            created_at = None
        if not separator or not instance_id or created_at is None or created_at.tzinfo is None:
            raise errors.OperationRefused(
                f"not a page cursor: {text!r} (a cursor is the next_cursor of a page, "
                "such as 2026-01-31T12:00:00.000000+00:00/instance-id)"
            )
        return cls(created_at.astimezone(dt.timezone.utc), instance_id)


@attrs.frozen
class InstancePage(records.Page[records.Instance]):
    """A page of instances, with the cursors of the pages around it."""

    next_cursor: str | None = None
    """The page after this one (None: this is the last page)."""
    previous_cursor: str | None = None
    """The page before this one, read with ``before`` (None: this is the first page)."""


def list_instances(
    tx: base.Transaction,
    *,
    tenant_id: str | None = None,
    status: records.InstanceStatus | None = None,
    limit: int = 100,
    offset: int = 0,
    after: str | None = None,
    before: str | None = None,
    count_at_most: int | None = None,
) -> InstancePage:
    """A page of the list: ``limit`` rows after the cursor ``after``, or before
    the cursor ``before``, or (from older clients) ``offset`` rows in; its total
    counts the matching instances, up to ``count_at_most`` when given."""
    if sum((after is not None, before is not None, offset > 0)) > 1:
        raise errors.OperationRefused(
            "a page is chosen by one of a cursor after it, a cursor before it or an offset"
        )
    filters = {"tenant_id": tenant_id, "status": status}
    # one row more than the page says whether a page follows (or precedes)
    if offset:
        items = tx.list_instances(**filters, limit=limit + 1, offset=offset)
    elif before is not None:
        items = tx.list_instances_after(
            **filters, limit=limit + 1, before=InstanceCursor.decode(before)
        )
    else:
        cursor = None if after is None else InstanceCursor.decode(after)
        items = tx.list_instances_after(**filters, limit=limit + 1, after=cursor)
    if count_at_most is None:
        total = tx.count_instances(**filters)
    else:
        total = tx.count_instances_up_to(count_at_most, **filters)
    more = len(items) > limit
    if before is not None:
        items = items[len(items) - limit :] if more else items
        following, preceding = True, more
    else:
        items = items[:limit]
        following, preceding = more, after is not None or offset > 0
    return InstancePage(
        items,
        total,
        InstanceCursor.after(items[-1]).encode() if items and following else None,
        InstanceCursor.after(items[0]).encode() if items and preceding else None,
    )
