"""Pages of the instance list, by cursor: each page starts where the last one ended.

A page is read from the index in the list's order (newest ``created_at``
first, ties by ``instance_id``) from the position of a cursor, the last row
of the page before: its cost does not grow with how deep the page is, as an
OFFSET would. The count that goes with a page may be capped (``1,000+``), so
that a page does not count the whole table either.
"""

from __future__ import annotations

import attrs

from runtara import errors, records
from runtara.records import InstanceCursor
from runtara.storage.transaction import Transaction


@attrs.frozen
class InstancePage(records.Page[records.Instance]):
    """A page of instances, with the cursors of the pages around it."""

    next_cursor: str | None = None
    """The page after this one (None: this is the last page)."""
    previous_cursor: str | None = None
    """The page before this one, read with ``before`` (None: this is the first page)."""


def list_instances(
    tx: Transaction,
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
