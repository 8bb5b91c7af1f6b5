"""The web console: what runs, what is stuck, what failed and why, the
operator's actions on one instance, and the queues and schedules instances
start through.

Pages are rendered on the server from the storage, through
:class:`runtara.admin.local.LocalAdmin` (the operators' interface, the same
the command-line tools use), and read without JavaScript. A page showing
something that still runs refreshes itself every :data:`REFRESH` seconds.

Actions (on an instance: pause, resume, cancel, a custom signal, retry, fork; on the
instances ticked in the list, or all those matching its filter: cancel, retry;
on a queue: pause, resume; on a schedule: pause, resume, trigger) are form posts.
A post without ``confirmed=yes`` answers with a confirmation page that posts
again with it; with JavaScript the page asks in a dialog instead and posts
confirmed at once. A done action redirects back to the page it was asked
from, which says what was done. Actions need the operate credential: to a
viewer with the read one, the pages offer none.
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
from collections.abc import Callable
from pathlib import Path

import attrs

from runtara import clock, errors, records, tracing
from runtara.admin.local import LocalAdmin
from runtara.http import messages, templating
from runtara.http.messages import Request, Response
from runtara.launcher import logs
from runtara.launcher.spec import LaunchSpec

logger = logging.getLogger(__name__)

PAGE = 50
"""Instances per page of the list."""
COUNTED = 1000
"""The list counts instances up to this many (then says ``1,000+``): a page never
counts the whole table."""
LAST_PAGE = 1_000_000
"""The highest page number asked for that is answered (storage offsets are bounded)."""
EVENTS_PAGE = 100
CHECKPOINTS_PAGE = 50
REFRESH = 5
"""Seconds between two refreshes of a page showing something that runs."""
SILENT_AFTER = dt.timedelta(seconds=60)
"""A running instance silent for longer is pointed out in the list."""
LOG_LINES = 40
LOG_TAIL_BYTES = 16 * 1024
STATUSES = tuple(status.value for status in records.InstanceStatus)
SIGNALS = {
    "pause": records.SignalType.PAUSE,
    "resume": records.SignalType.RESUME,
    "cancel": records.SignalType.CANCEL,
}
ACTIONS = (*SIGNALS, "signal", "retry", "fork")
_EXPLANATIONS = {
    "pause": "The instance is asked to pause at its next checkpoint or signal poll; it "
    "acknowledges and suspends, and a resume runs it again.",
    "resume": "A paused instance goes on; one started by this server's launcher is launched again.",
    "cancel": "The instance is asked to stop at its next checkpoint or signal poll. A "
    "cancelled instance never runs again.",
    "signal": "The instance takes this signal once, at its checkpoint with this id.",
    "retry": "The instance goes on from its last checkpoint (finished durable steps are not "
    "run again), launched at once with a fresh count of failures.",
    "fork": "A new instance runs again from this checkpoint, with copies of the checkpoints "
    "saved up to it (their durable steps are not run again) and this instance's launch; "
    "this instance is not changed.",
}


BULK_ACTIONS = {
    "cancel": frozenset(
        {
            records.InstanceStatus.PENDING,
            records.InstanceStatus.RUNNING,
            records.InstanceStatus.SUSPENDED,
        }
    ),
    "retry": frozenset({records.InstanceStatus.FAILED, records.InstanceStatus.CANCELLED}),
    "fork": frozenset(records.InstanceStatus),
}
"""The actions on many instances, and the statuses each chooses among."""
BULK_GRACE = 30.0
"""Seconds a cancelled instance has to end by itself before its process is terminated."""
BULK_SHOWN = 20
"""Ids listed on the confirmation of an action on many instances."""
_BULK_EXPLANATIONS = {
    "cancel": "Each instance is asked to stop; one that has not ended within "
    f"{BULK_GRACE:g} s has its process terminated. Pending and suspended ones are cancelled "
    "at once. A cancelled instance never runs again.",
    "retry": "Each instance goes on from its last checkpoint (finished durable steps are not "
    "run again), launched with a fresh count of failures.",
    "fork": "Each instance is copied into a new one that runs again from its latest "
    "checkpoint, launched as the original was; the originals are not changed. Forking "
    "again makes more copies.",
}

_CHOSEN = {"cancel": "live", "retry": "failed or cancelled", "fork": "all"}

QUEUE_ACTIONS = ("pause", "resume")
SCHEDULE_ACTIONS = ("pause", "resume", "trigger")
_QUEUE_EXPLANATIONS = {
    "pause": "No more of the queue's instances are launched, by any server on this "
    "storage, until it is resumed; those running go on.",
    "resume": "The queue's due instances are launched again, as its limits allow.",
}
_SCHEDULE_EXPLANATIONS = {
    "pause": "The schedule starts nothing at its ticks until it is resumed; the instances "
    "it started go on.",
    "resume": "The schedule starts an instance at its ticks again.",
    "trigger": "One instance of the schedule is started now, besides its ticks.",
}


class BadRequest(Exception):
    """Input the console cannot use; the message says why (answered with 400)."""


@attrs.frozen
class Pages:
    """Where a paged listing is, and the links to its neighbours."""

    first: int
    last: int
    total: int
    previous: str | None
    following: str | None


@attrs.frozen
class Listing:
    """Where a page of the instance list is: how many it shows of how many
    (``1,000+`` past :data:`COUNTED`), and links by cursor to its neighbours."""

    shown: int
    total: str
    newer: str | None
    older: str | None
    first: str | None
    """The list's first page (from a page after it)."""


def counted(number: int) -> str:
    """A count taken up to ``COUNTED + 1``: ``1,000+`` when it got there."""
    return f"{COUNTED:,}+" if number > COUNTED else str(number)


def page_number(raw: str | None, name: str) -> int:
    """A 1-based page number from a query parameter (1 when absent)."""
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= LAST_PAGE:
        raise BadRequest(f"{name} must be a page number from 1 to {LAST_PAGE}, not {raw!r}")
    return int(raw)


def pages(page: int, size: int, shown: int, total: int, to_page: Callable[[int], str]) -> Pages:
    offset = (page - 1) * size
    return Pages(
        first=offset + 1 if shown else 0,
        last=offset + shown,
        total=total,
        previous=to_page(page - 1) if page > 1 else None,
        following=to_page(page + 1) if offset + shown < total else None,
    )


class Console:
    def __init__(
        self,
        admin: LocalAdmin,
        *,
        runs_dir: Path | None,
        now: Callable[[], dt.datetime] = clock.utc_now,
    ) -> None:
        self.admin = admin
        self.runs_dir = runs_dir
        self._now = now

    def _page(
        self,
        request: Request,
        template: str,
        code: int = 200,
        refresh: int | None = None,
        **context,
    ) -> Response:
        segments = request.segments
        page = templating.render(
            template,
            refresh=refresh,
            now=self._now(),
            viewer=request.viewer,
            section=segments[0] if segments else "",
            **context,
        )
        return messages.html(page, code)

    def problem(
        self, request: Request, status: int, title: str, message: str, back: str = "/instances"
    ) -> Response:
        return self._page(request, "problem.html", status, title=title, message=message, back=back)

    # --- pages ------------------------------------------------------------------

    def instances(self, request: Request) -> Response:
        """The list: filtered by status and tenant, newest first, paged; an exact id
        searched for opens that instance's page."""
        query = request.query
        status_name = query.get("status", "")
        if status_name and status_name not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status_name!r}")
        status = records.InstanceStatus(status_name) if status_name else None
        tenant = query.get("tenant", "").strip()
        search = query.get("id", "").strip()
        message = None
        if search:
            if self.admin.instance_details(search, recent_events=0) is not None:
                return messages.redirect(messages.path_of("instances", search))
            message = f"No instance has the id {search!r}."
        # page=N: links from before pages had cursors (read by offset)
        number = page_number(query.get("page"), "page")
        after, before = query.get("after") or None, query.get("before") or None
        if number > 1 and (after or before):
            raise BadRequest("a page is chosen by page or by a cursor (after, before), not both")
        try:
            found = self.admin.list_instances(
                tenant_id=tenant or None,
                status=status,
                limit=PAGE,
                offset=(number - 1) * PAGE,
                after=after,
                before=before,
                count_at_most=COUNTED + 1,
            )
        except errors.OperationRefused as refused:
            raise BadRequest(str(refused)) from None
        counts = self.admin.storage.run(
            lambda tx: {
                name: tx.count_instances_up_to(
                    COUNTED + 1,
                    tenant_id=tenant or None,
                    status=records.InstanceStatus(name) if name else None,
                )
                for name in ("", *STATUSES)
            },
            write=False,
        )

        def around(**cursor: str | None) -> str:
            return templating.link("instances", status=status_name, tenant=tenant, **cursor)

        where = Listing(
            shown=len(found.items),
            total=counted(found.total),
            newer=around(before=found.previous_cursor) if found.previous_cursor else None,
            older=around(after=found.next_cursor) if found.next_cursor else None,
            first=around() if found.previous_cursor else None,
        )
        running = any(not instance.status.is_terminal for instance in found.items)
        now = self._now()
        return self._page(
            request,
            "instances.html",
            refresh=REFRESH if running else None,
            instances=found.items,
            pages=where,
            statuses=STATUSES,
            status=status_name,
            tenant=tenant,
            search=search,
            counts={name: counted(number) for name, number in counts.items()},
            message=message,
            notes={instance.instance_id: note(instance, now) for instance in found.items},
            done=_bulk_done(query),
        )

    def instance(self, request: Request, instance_id: str) -> Response:
        """One instance: facts, launch and attempts, output or error, actions,
        timeline, checkpoints and logs."""
        details = self.admin.instance_details(instance_id, recent_events=0)
        if details is None:
            return self._missing(request, instance_id)
        query = request.query
        event_page = page_number(query.get("events"), "events")
        checkpoint_page = page_number(query.get("checkpoints"), "checkpoints")
        events = self.admin.list_events(
            instance_id, limit=EVENTS_PAGE, offset=(event_page - 1) * EVENTS_PAGE
        )
        checkpoints = self.admin.list_checkpoints(
            instance_id, limit=CHECKPOINTS_PAGE, offset=(checkpoint_page - 1) * CHECKPOINTS_PAGE
        )
        launch = details.launch
        instance = details.instance

        def to(events_at: int, checkpoints_at: int) -> str:
            return templating.link(
                "instances",
                instance_id,
                events=events_at if events_at > 1 else None,
                checkpoints=checkpoints_at if checkpoints_at > 1 else None,
            )

        return self._page(
            request,
            "instance.html",
            refresh=None if instance.status.is_terminal else REFRESH,
            instance=instance,
            pending=details.pending_signal,
            custom=details.custom_signals,
            launch=launch,
            wait_reason=details.wait_reason,
            children=details.children,
            command=_command(launch),
            retryable=launch is not None
            and instance.status
            in (records.InstanceStatus.FAILED, records.InstanceStatus.CANCELLED),
            forkable=launch is not None and instance.checkpoint_id is not None,
            events=events,
            event_pages=pages(
                event_page,
                EVENTS_PAGE,
                len(events.items),
                events.total,
                lambda n: to(n, checkpoint_page),
            ),
            checkpoints=checkpoints,
            checkpoint_pages=pages(
                checkpoint_page,
                CHECKPOINTS_PAGE,
                len(checkpoints.items),
                checkpoints.total,
                lambda n: to(event_page, n),
            ),
            logs=self._log_tails(instance_id) if launch is not None else None,
            sent=_sent(query.get("sent", ""), query.get("checkpoint_id", "")),
            trace_id=tracing.trace_id_hex(instance_id),
        )

    def checkpoint(self, request: Request, instance_id: str, checkpoint_id: str) -> Response:
        """One checkpoint's state, as a file."""
        try:
            found = self.admin.get_checkpoint(instance_id, checkpoint_id)
        except errors.OperationRefused:
            return self._missing(request, instance_id)
        if found is None:
            return self.problem(
                request,
                404,
                "No such checkpoint",
                f"Instance {instance_id!r} has no checkpoint {checkpoint_id!r}.",
                messages.path_of("instances", instance_id),
            )
        return messages.download(found.state, f"{instance_id}-{checkpoint_id}.bin")

    def log(self, request: Request, instance_id: str, stream: str) -> Response:
        """A launched instance's stdout or stderr log as it is at one moment (a cap
        waits for the read); its older part, moved to ``<name>.1`` by the cap, is not
        included."""
        if stream not in logs.STREAMS:
            return self.problem(
                request,
                404,
                "No such log",
                f"Logs are {' and '.join(logs.STREAMS)}, not {stream!r}.",
            )
        if self.admin.instance_details(instance_id, recent_events=0) is None:
            return self._missing(request, instance_id)
        data = b""
        if self.runs_dir is not None:
            data = logs.read_all(logs.log_path(self.runs_dir, instance_id, stream))
        return messages.download(data, f"{instance_id}-{stream}.log", "text/plain; charset=utf-8")

    def _log_tails(self, instance_id: str) -> dict[str, str]:
        if self.runs_dir is None:
            return {}
        return {
            stream: logs.tail(
                logs.log_path(self.runs_dir, instance_id, stream), LOG_LINES, LOG_TAIL_BYTES
            )
            for stream in ("stderr", "stdout")
        }

    def _missing(self, request: Request, instance_id: str) -> Response:
        return self.problem(
            request, 404, "No such instance", f"No instance has the id {instance_id!r}."
        )

    # --- actions ----------------------------------------------------------------

    def act(self, request: Request, instance_id: str, action: str) -> Response:
        """Confirm, then send ``action`` (pause, resume, cancel, or signal: a
        custom signal for the form's checkpoint id) to the instance, retry it, or fork
        it from the form's checkpoint id (its latest without one): then the new
        instance's page follows."""
        form = request.form
        payload = form.get("payload", "")
        checkpoint_id = form.get("checkpoint_id", "").strip()
        back = messages.path_of("instances", instance_id)
        if action == "signal" and not checkpoint_id:
            raise BadRequest("a custom signal needs the checkpoint id it is for")
        if form.get("confirmed") != "yes":
            if self.admin.instance_details(instance_id, recent_events=0) is None:
                return self._missing(request, instance_id)
            return self._page(
                request,
                "confirm.html",
                subject=instance_id,
                question=_question(action, instance_id, checkpoint_id),
                explanation=_EXPLANATIONS[action],
                button=_button(action, instance_id),
                danger=action == "cancel",
                target=messages.path_of("instances", instance_id, action),
                back=back,
                payload=None if action == "fork" else payload,
                checkpoint_id=checkpoint_id if action in ("signal", "fork") else None,
            )
        forked = None
        try:
            if action == "signal":
                self.admin.send_custom_signal(instance_id, checkpoint_id, payload.encode())
            elif action == "retry":
                self.admin.retry_instance(instance_id, {}, None)
            elif action == "fork":
                forked = self.admin.fork_instance(
                    instance_id, checkpoint_id or None, None, {}, None
                )
            else:
                self.admin.send_signal(instance_id, SIGNALS[action], payload.encode())
        except errors.OperationRefused as refusal:
            return self.problem(request, 409, f"Cannot {_verb(action)}", str(refusal), back)
        except errors.RequestError as error:
            raise BadRequest(str(error)) from None
        logger.info(
            "console: %s %s instance %r%s (from %s)",
            "custom signal" if action == "signal" else action,
            "of" if action in ("retry", "fork") else "sent to",
            instance_id,
            f" for checkpoint {checkpoint_id!r}" if action == "signal" else "",
            request.client,
        )
        if forked is not None:
            new_id, _ = forked
            logger.info("console: %r forked as %r (from %s)", instance_id, new_id, request.client)
            return messages.redirect(templating.link("instances", new_id, sent="fork"))
        return messages.redirect(
            templating.link(
                "instances",
                instance_id,
                sent=action,
                checkpoint_id=checkpoint_id if action == "signal" else None,
            )
        )

    def bulk(self, request: Request) -> Response:
        """Cancel or retry the instances ticked in the list, or all those matching its
        filter (created before the confirmation was asked): confirm with their count,
        then act on each and go back to the list, which says how many were done."""
        form = request.form
        action = form.get("action", "")
        if action not in BULK_ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(BULK_ACTIONS)}, not {action!r}")
        status_name, tenant = form.get("status", ""), form.get("tenant", "").strip()
        if status_name and status_name not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status_name!r}")
        back = templating.link("instances", status=status_name, tenant=tenant)
        fields: dict[str, str] = {"action": action, "status": status_name, "tenant": tenant}
        if form.get("matching") == "yes":
            before = _moment(form.get("before", "")) or self._now()
            ids = self._matching(status_name, tenant, BULK_ACTIONS[action], before)
            fields.update(matching="yes", before=before.isoformat())
        else:
            ids = list(dict.fromkeys(v for k, v in form.items() if k.startswith("pick.") and v))
            fields.update({f"pick.{n}": instance_id for n, instance_id in enumerate(ids)})
        if not ids:
            return self.problem(
                request,
                400,
                "Nothing selected",
                f"No instance to {action}: tick some in the list, or all matching its filter "
                f"({_CHOSEN[action]} ones are chosen).",
                back,
            )
        if form.get("confirmed") != "yes":
            count = f"{len(ids)} instance{'s' * (len(ids) != 1)}"
            shown = ", ".join(ids[:BULK_SHOWN]) + (" …" if len(ids) > BULK_SHOWN else "")
            return self._page(
                request,
                "confirm.html",
                subject="instances",
                question=f"{action.capitalize()} {count}?",
                explanation=f"{shown}. {_BULK_EXPLANATIONS[action]}",
                button=f"Yes, {action} {count}",
                danger=action == "cancel",
                target="/instances",
                back=back,
                payload=None,
                checkpoint_id=None,
                fields=fields,
            )
        done = {"ok": 0, "refused": 0}
        for instance_id in ids:
            try:
                if action == "retry":
                    self.admin.retry_instance(instance_id, {}, None)
                elif action == "fork":
                    self.admin.fork_instance(instance_id, None, None, {}, None)
                else:
                    self.admin.stop_instance(instance_id, BULK_GRACE)
            except (errors.OperationRefused, errors.RequestError) as refusal:
                done["refused"] += 1
                logger.info("console: %s of instance %r refused: %s", action, instance_id, refusal)
            else:
                done["ok"] += 1
        logger.info(
            "console: %s of %d instances: %d done, %d refused (from %s)",
            action,
            len(ids),
            done["ok"],
            done["refused"],
            request.client,
        )
        return messages.redirect(
            templating.link("instances", status=status_name, tenant=tenant, bulk=action, **done)
        )

    def _matching(
        self,
        status_name: str,
        tenant: str,
        applies: frozenset[records.InstanceStatus],
        before: dt.datetime,
    ) -> list[str]:
        """The ids of the instances the list's filter shows whose status is in
        ``applies``, created at or before ``before``, newest first."""
        statuses = [records.InstanceStatus(status_name)] if status_name else sorted(applies)
        found: list[records.Instance] = []
        for status in statuses:
            if status not in applies:
                continue
            cursor = None
            while True:
                page = self.admin.list_instances(
                    tenant_id=tenant or None, status=status, limit=PAGE, after=cursor
                )
                found.extend(i for i in page.items if i.created_at <= before)
                cursor = page.next_cursor
                if cursor is None:
                    break
        found.sort(key=lambda i: (i.created_at, i.instance_id), reverse=True)
        return list(dict.fromkeys(i.instance_id for i in found))

    # --- queues and schedules ---------------------------------------------------

    def queues(self, request: Request) -> Response:
        """Every queue: its limits, whether it is paused, how many of its instances
        run, are due and wait for a later time; pause and resume."""
        views = self.admin.list_queues()
        busy = any(view.figures != records.QueueFigures() for view in views)
        return self._page(
            request,
            "queues.html",
            refresh=REFRESH if busy else None,
            queues=views,
            sent=_queue_sent(request.query.get("sent", ""), request.query.get("queue", "")),
        )

    def schedules(self, request: Request) -> Response:
        """Every schedule: when it ticks, its next and last tick, the instance it
        started last, its counts; pause, resume and trigger."""
        found = self.admin.list_schedules()
        query = request.query
        return self._page(
            request,
            "schedules.html",
            refresh=REFRESH if any(not schedule.paused for schedule in found) else None,
            schedules=found,
            sent=_schedule_sent(query.get("sent", ""), query.get("schedule", "")),
            started=query.get("instance") if query.get("sent") == "trigger" else None,
        )

    def _ask(
        self, request: Request, kind: str, name: str, action: str, explanation: str
    ) -> Response:
        """The confirmation of ``action`` on the queue or schedule ``name``."""
        return self._page(
            request,
            "confirm.html",
            subject=f"{kind}s",
            question=f"{action.capitalize()} {kind} {name}?",
            explanation=explanation,
            button=f"Yes, {action} {kind} {name}",
            danger=False,
            target=messages.path_of(f"{kind}s", name, action),
            back=f"/{kind}s",
            payload=None,
            checkpoint_id=None,
        )

    def queue_act(self, request: Request, name: str, action: str) -> Response:
        """Confirm, then pause or resume the queue ``name``."""
        back = "/queues"
        if not any(view.queue.name == name for view in self.admin.list_queues()):
            return self.problem(request, 404, "No such queue", f"No queue is named {name!r}.", back)
        if request.form.get("confirmed") != "yes":
            return self._ask(request, "queue", name, action, _QUEUE_EXPLANATIONS[action])
        try:
            self.admin.set_queue(name, paused=action == "pause")
        except errors.OperationRefused as refusal:
            return self.problem(request, 409, f"Cannot {action} the queue", str(refusal), back)
        except errors.RequestError as error:
            raise BadRequest(str(error)) from None
        logger.info("console: queue %r %s (from %s)", name, _done(action), request.client)
        return messages.redirect(templating.link("queues", sent=action, queue=name))

    def schedule_act(self, request: Request, name: str, action: str) -> Response:
        """Confirm, then pause, resume or trigger the schedule ``name``."""
        back = "/schedules"
        if not any(schedule.name == name for schedule in self.admin.list_schedules()):
            return self.problem(
                request, 404, "No such schedule", f"No schedule is named {name!r}.", back
            )
        if request.form.get("confirmed") != "yes":
            return self._ask(request, "schedule", name, action, _SCHEDULE_EXPLANATIONS[action])
        started = None
        try:
            if action == "trigger":
                started = self.admin.trigger_schedule(name)
            else:
                self.admin.pause_schedule(name, action == "pause")
        except errors.OperationRefused as refusal:
            return self.problem(request, 409, f"Cannot {action} the schedule", str(refusal), back)
        except errors.RequestError as error:
            raise BadRequest(str(error)) from None
        logger.info(
            "console: schedule %r %s%s (from %s)",
            name,
            _done(action),
            f": instance {started!r} started" if started is not None else "",
            request.client,
        )
        return messages.redirect(
            templating.link("schedules", sent=action, schedule=name, instance=started)
        )


def note(instance: records.Instance, now: dt.datetime) -> tuple[str, str] | None:
    """What the list says of an instance beside its status, and how loudly
    (``problem``, ``warning`` or ``muted``): why it failed or was cancelled, how
    long a running one has been silent, what a suspended or pending one waits for."""
    status = instance.status
    if status in (records.InstanceStatus.FAILED, records.InstanceStatus.CANCELLED):
        lines = [line.strip() for line in (instance.error or "").splitlines() if line.strip()]
        if not lines:
            return None
        said = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
        return (said if len(said) <= 200 else said[:199] + "…"), "problem"
    if status is records.InstanceStatus.RUNNING:
        last = instance.last_activity_at or instance.started_at or instance.created_at
        if now - last > SILENT_AFTER:
            return f"silent for {templating.ago(last, now).removesuffix(' ago')}", "warning"
        return None
    if status is records.InstanceStatus.SUSPENDED:
        if instance.sleep_until is not None:
            return f"sleeps until {templating.when(instance.sleep_until)}", "muted"
        return "paused: waits for a resume", "muted"
    if status is records.InstanceStatus.PENDING:
        return "waits to be launched", "muted"
    return None


def _command(launch: records.Launch | None) -> str | None:
    if launch is None:
        return None
    try:
        return shlex.join(LaunchSpec.from_json(launch.spec).command)
    except errors.ConfigError as error:
        return f"(none that can run: {error})"


def _verb(action: str) -> str:
    return "send the custom signal" if action == "signal" else action


def _button(action: str, instance_id: str) -> str:
    if action == "signal":
        return "Yes, send the custom signal"
    return f"Yes, {action} {instance_id}"


def _question(action: str, instance_id: str, checkpoint_id: str) -> str:
    if action == "signal":
        return f"Send a custom signal for checkpoint {checkpoint_id!r} to {instance_id}?"
    if action == "fork":
        at = f"checkpoint {checkpoint_id!r}" if checkpoint_id else "its latest checkpoint"
        return f"Fork {instance_id} from {at}?"
    return f"{action.capitalize()} {instance_id}?"


def _sent(action: str, checkpoint_id: str) -> str | None:
    if action == "signal":
        return f"Custom signal for checkpoint {checkpoint_id!r} sent."
    if action in SIGNALS:
        return f"{action.capitalize()} sent: the instance sees it at its next checkpoint or poll."
    if action == "retry":
        return "Retried: it is launched again and goes on from its last checkpoint."
    if action == "fork":
        return "Forked: this new instance is launched and runs again from the checkpoint named."
    return None


def _moment(raw: str) -> dt.datetime | None:
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"before must be an ISO time, not {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _bulk_done(query) -> str | None:
    """What the list says after an action on many instances."""
    action = query.get("bulk", "")
    if action not in BULK_ACTIONS:
        return None
    ok, refused = query.get("ok", "0"), query.get("refused", "0")
    if not (ok.isdigit() and refused.isdigit()):
        return None
    said = {"retry": "Retried", "fork": "Forked", "cancel": "Cancel sent to"}[action]
    return f"{said} {ok} instance{'s' * (ok != '1')}" + (
        f"; {refused} refused (the log says why)." if refused != "0" else "."
    )


def _done(action: str) -> str:
    return {"pause": "paused", "resume": "resumed", "trigger": "triggered"}[action]


def _queue_sent(action: str, name: str) -> str | None:
    if action == "pause":
        return f"Queue {name} paused: none of its instances is launched until it is resumed."
    if action == "resume":
        return f"Queue {name} resumed: its due instances are launched as its limits allow."
    return None


def _schedule_sent(action: str, name: str) -> str | None:
    if action == "pause":
        return f"Schedule {name} paused: it starts nothing until it is resumed."
    if action == "resume":
        return f"Schedule {name} resumed."
    if action == "trigger":
        return f"Schedule {name} triggered: started instance"
    return None
