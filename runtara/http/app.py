"""The endpoint's routes, and who may use each (see :mod:`runtara.http.access`).

====================================  ==========  ===========================================
``GET /healthz``                      anyone      200 ``ok``: the process answers
``GET /readyz``                       anyone      200 ``ready`` or 503 ``not ready``; the reason
                                                  only with a credential
``GET /static/FILE``                  anyone      the console's style sheet and script
``GET /login``, ``POST /login``       anyone      the login form; opens a session
``POST /logout``                      anyone      ends the browser's session
``GET /metrics``                      read        the Prometheus exposition
``GET /instances``                    read        the list (``status``, ``tenant``, ``id``, ``page``)
``POST /instances``                   operate     ``cancel`` or ``retry`` the ``pick.N`` ids, or all
                                                  ``matching`` the list's filter
``GET /instances/ID``                 read        one instance (``events``, ``checkpoints``: pages)
``GET /instances/ID/checkpoints/CP``  read        a checkpoint's state, as a file
``GET /instances/ID/logs/STREAM``     read        a launched instance's ``stdout`` or ``stderr``
``POST /instances/ID/ACTION``         operate     ``pause``, ``resume``, ``cancel``, ``signal``,
                                                  ``retry``
``GET /queues``                       read        every queue: limits, running, due, waiting
``POST /queues/NAME/ACTION``          operate     ``pause``, ``resume``
``GET /schedules``                    read        every schedule: ticks, next and last tick
``POST /schedules/NAME/ACTION``       operate     ``pause``, ``resume``, ``trigger``
====================================  ==========  ===========================================

A request without a usable credential is answered 401 (the login form for the
console's pages), one from a client refused for its wrong tokens 429, an
action with the read credential or from another site's page 403. Storage
failures answer 503, bad input 400, unknown things 404.

:meth:`HttpApp.handle` decides at once (it runs on the HTTP server's event
loop: checking credentials costs no I/O); what needs the storage or the QUIC
side it returns as :data:`Work`, which the server runs on its thread pool.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from collections.abc import Callable
from urllib.parse import quote

import attrs

from runtara import errors
from runtara import metrics as metrics_module
from runtara.http import messages, templating
from runtara.http.access import (
    ENDED_SESSION,
    WRONG_CREDENTIAL,
    Access,
    Refusal,
    same_site_path,
)
from runtara.http.console import ACTIONS, QUEUE_ACTIONS, SCHEDULE_ACTIONS, BadRequest, Console
from runtara.http.messages import Request, Response, Viewer
from runtara.http.probes import Readiness

logger = logging.getLogger(__name__)

Work = Callable[[], Response]
"""An answer still to be computed, off the event loop (it reads the storage)."""

STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
STATIC_CACHE = ("Cache-Control", "max-age=600")
PAGES = ("instances", "queues", "schedules")
"""The console's sections: a request for one without a credential gets the login form."""


class HttpApp:
    def __init__(
        self,
        *,
        access: Access,
        metrics: metrics_module.Metrics,
        readiness: Readiness,
        console: Console,
    ) -> None:
        self.access = access
        self.metrics = metrics
        self.readiness = readiness
        self.console = console

    def handle(self, request: Request) -> Response | Work:
        """The response to ``request``, or the work that gives it (never raises for
        anything a client sends)."""
        if _holds_nul(request):
            # No driver stores NUL in text (PostgreSQL refuses it), so no id holds one.
            return messages.text(400, "the request's text must not contain NUL characters\n")
        segments, method = request.segments, request.method
        if segments == ["healthz"] and method == "GET":
            return messages.text(200, "ok\n")
        if len(segments) == 2 and segments[0] == "static" and method == "GET":
            return _static(segments[1])
        if segments == ["login"]:
            return self._login(request)
        if segments == ["logout"] and method == "POST":
            return self._logout(request)
        who = self.access.identify(request)
        if segments == ["readyz"] and method == "GET":
            return functools.partial(self._readiness, isinstance(who, Viewer))
        if isinstance(who, Refusal):
            return self._unauthorized(request, who)
        request = attrs.evolve(request, viewer=who)
        if method == "POST":
            if self.access.cross_site(request):
                return self._refused(request, 403, "an action sent from another site's page")
            if not who.may_act:
                return self._refused(
                    request, 403, "this credential may only read: actions need the operate one"
                )
        return functools.partial(self._answer, request)

    def _answer(self, request: Request) -> Response:
        try:
            return self._route(request, request.segments)
        except BadRequest as error:
            return self.console.problem(request, 400, "Bad request", str(error))
        except errors.StorageError as error:
            logger.warning("console: %s %s failed: %s", request.method, request.path, error)
            return self.console.problem(request, 503, "Storage unavailable", str(error))

    def _route(self, request: Request, segments: list[str]) -> Response:
        method = request.method
        if segments == ["metrics"] and method == "GET":
            body, content_type = self.metrics.render(request.headers.get("accept"))
            return Response(200, body, content_type)
        if not segments and method == "GET":
            return messages.redirect("/instances")
        section, rest = segments[0], segments[1:]
        named = {  # pages of named things: the list, and an action on one by name
            "queues": (self.console.queues, QUEUE_ACTIONS, self.console.queue_act),
            "schedules": (self.console.schedules, SCHEDULE_ACTIONS, self.console.schedule_act),
        }
        if section in named:
            show, actions, act = named[section]
            if not rest and method == "GET":
                return show(request)
            if len(rest) == 2 and rest[1] in actions and method == "POST":
                return act(request, rest[0], rest[1])
            return self._not_found(request)
        if section != "instances":
            return self._not_found(request)
        if not rest and method == "GET":
            return self.console.instances(request)
        if not rest and method == "POST":
            return self.console.bulk(request)
        if len(rest) == 1 and method == "GET":
            return self.console.instance(request, rest[0])
        if len(rest) == 2 and rest[1] in ACTIONS and method == "POST":
            return self.console.act(request, rest[0], rest[1])
        if len(rest) == 3 and rest[1] == "checkpoints" and method == "GET":
            return self.console.checkpoint(request, rest[0], rest[2])
        if len(rest) == 3 and rest[1] == "logs" and method == "GET":
            return self.console.log(request, rest[0], rest[2])
        return self._not_found(request)

    def _readiness(self, detailed: bool) -> Response:
        problem = self.readiness.problem()
        if problem is None:
            return messages.text(200, "ready\n")
        # The reason names the storage's user, host or files: for those with a credential.
        return messages.text(503, f"not ready: {problem}\n" if detailed else "not ready\n")

    def _not_found(self, request: Request) -> Response:
        return self.console.problem(
            request, 404, "Not found", f"Nothing answers {request.method} {request.path} here."
        )

    # --- refusals, logging in and out ----------------------------------------------

    def _refused(self, request: Request, status: int, why: str) -> Response:
        logger.warning(
            "HTTP %s %s from %s refused: %s", request.method, request.path, request.client, why
        )
        return messages.text(status, f"refused: {why}\n")

    def _unauthorized(self, request: Request, refusal: Refusal) -> Response:
        # Not logged: anyone can send requests without a credential; wrong
        # credentials are logged by Access, per client and in aggregate.
        logger.debug(
            "HTTP %s %s from %s refused: %s",
            request.method,
            request.path,
            request.client,
            refusal.reason,
        )
        headers = [("WWW-Authenticate", 'Bearer realm="runtara-core"')]
        if refusal.retry_after is not None:
            headers.append(("Retry-After", str(int(refusal.retry_after) + 1)))
        if request.method == "GET" and (not request.segments or request.segments[0] in PAGES):
            return self._login_form(
                _here(request), _login_problem(refusal), refusal.status, *headers
            )
        return messages.text(refusal.status, f"refused: {refusal.reason}\n", *headers)

    def _login(self, request: Request) -> Response:
        if request.method != "POST":
            return self._login_form(same_site_path(request.query.get("next", "")), None)
        target = same_site_path(request.form.get("next", ""))
        if self.access.cross_site(request):
            return self._refused(request, 403, "a login sent from another site's page")
        opened = self.access.log_in(request, request.form.get("token", ""))
        if isinstance(opened, Refusal):
            return self._login_form(target, _login_problem(opened), opened.status)
        session, value = opened
        logger.info(
            "HTTP login from %s: console session %s (%s)",
            request.client,
            session.id,
            session.role.name.lower(),
        )
        return messages.redirect(target, ("Set-Cookie", self.access.session_cookie(value)))

    def _logout(self, request: Request) -> Response:
        if self.access.cross_site(request):
            return self._refused(request, 403, "a logout sent from another site's page")
        session = self.access.session_of(request)
        if session is not None:
            logger.info("HTTP logout from %s: console session %s", request.client, session.id)
        return messages.redirect("/login", ("Set-Cookie", self.access.cleared_cookie()))

    def _login_form(
        self, target: str, problem: str | None, status: int = 200, *headers: tuple[str, str]
    ) -> Response:
        page = templating.render(
            "login.html", refresh=None, now=None, viewer=None, next=target, problem=problem
        )
        return messages.html(page, status, *headers)


def _login_problem(refusal: Refusal) -> str | None:
    """What the login form says of a refusal."""
    if refusal.status == 429:
        return (
            f"Too many wrong tokens from your address: try again in "
            f"{int(refusal.retry_after or 0) + 1} s."
        )
    if refusal.reason == WRONG_CREDENTIAL:
        return "That is not a token of this server."
    if refusal.reason == ENDED_SESSION:
        return "Your session has ended: log in again."
    return None


@functools.cache
def _static_file(name: str) -> bytes:
    return importlib.resources.files("runtara.http").joinpath("static", name).read_bytes()


def _static(name: str) -> Response:
    if name not in STATIC:
        return messages.text(404, f"no static file {name!r}\n")
    return Response(200, _static_file(name), STATIC[name], (STATIC_CACHE,))


def _holds_nul(request: Request) -> bool:
    texts = (*request.segments, *request.query.values(), *request.form.values())
    return any("\x00" in text for text in texts)


def _here(request: Request) -> str:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in request.query.items())
    return request.path + (f"?{query}" if query else "")
