"""The endpoint's routes, and who may use each (see :mod:`runtara.http.access`).

====================================  ======================================================
``GET /healthz``                      200 ``ok``: the process answers (no token needed)
``GET /readyz``                       200 ``ready`` or 503 with the reason (no token needed)
``GET /metrics``                      the Prometheus exposition
``GET /login``, ``POST /login``       the token form; sets the console's cookie
``GET /instances``                    the list (``status``, ``tenant``, ``id``, ``page``)
``GET /instances/ID``                 one instance (``events``, ``checkpoints``: page numbers)
``GET /instances/ID/checkpoints/CP``  a checkpoint's state, as a file
``GET /instances/ID/logs/STREAM``     a launched instance's ``stdout`` or ``stderr`` log
``POST /instances/ID/ACTION``         ``pause``, ``resume``, ``cancel`` or ``signal``
====================================  ======================================================

A refused request is answered 401 (no or a wrong token: the login form for
the console's pages) or 403 (a foreign ``Host``, a cross-site action) and
logged. Storage failures answer 503, bad input 400, unknown things 404.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from runtara import errors
from runtara import metrics as metrics_module
from runtara.http import access, messages, templating
from runtara.http.console import ACTIONS, BadRequest, Console
from runtara.http.messages import Request, Response
from runtara.http.probes import Readiness

logger = logging.getLogger(__name__)

PROBES = ("healthz", "readyz")


class HttpApp:
    def __init__(
        self,
        *,
        access_rules: access.Access,
        metrics: metrics_module.Metrics,
        readiness: Readiness,
        console: Console,
    ) -> None:
        self.access = access_rules
        self.metrics = metrics
        self.readiness = readiness
        self.console = console

    def handle(self, request: Request) -> Response:
        """The response to ``request`` (never raises for anything a client sends)."""
        if _holds_nul(request):
            # No driver stores NUL in text (PostgreSQL refuses it), so no id holds one.
            return messages.text(400, "the request's text must not contain NUL characters\n")
        segments = request.segments
        if segments in (["healthz"], ["readyz"]) and request.method == "GET":
            return self._probe(segments[0])
        foreign = self.access.foreign_host(request)
        if foreign is not None:
            return self._refused(request, 403, f"Host {foreign!r} is not this server's")
        if segments == ["login"]:
            return self._login(request)
        refusal = self.access.refusal(request)
        if refusal is not None:
            return self._unauthorized(request, refusal)
        if request.method == "POST" and self.access.cross_site(request):
            return self._refused(request, 403, "an action sent from another site's page")
        try:
            return self._route(request, segments)
        except BadRequest as error:
            return self.console.problem(400, "Bad request", str(error))
        except errors.StorageError as error:
            logger.warning("console: %s %s failed: %s", request.method, request.path, error)
            return self.console.problem(503, "Storage unavailable", str(error))

    def _route(self, request: Request, segments: list[str]) -> Response:
        method = request.method
        if segments == ["metrics"] and method == "GET":
            body, content_type = self.metrics.render(request.headers.get("accept"))
            return Response(200, body, content_type)
        if not segments and method == "GET":
            return messages.redirect("/instances")
        if segments[:1] != ["instances"]:
            return self._not_found(request)
        rest = segments[1:]
        if not rest and method == "GET":
            return self.console.instances(request)
        if len(rest) == 1 and method == "GET":
            return self.console.instance(request, rest[0])
        if len(rest) == 2 and rest[1] in ACTIONS and method == "POST":
            return self.console.act(request, rest[0], rest[1])
        if len(rest) == 3 and rest[1] == "checkpoints" and method == "GET":
            return self.console.checkpoint(request, rest[0], rest[2])
        if len(rest) == 3 and rest[1] == "logs" and method == "GET":
            return self.console.log(request, rest[0], rest[2])
        return self._not_found(request)

    def _probe(self, name: str) -> Response:
        if name == "healthz":
            return messages.text(200, "ok\n")
        problem = self.readiness.problem()
        if problem is None:
            return messages.text(200, "ready\n")
        return messages.text(503, f"not ready: {problem}\n")

    def _not_found(self, request: Request) -> Response:
        return self.console.problem(
            404, "Not found", f"Nothing answers {request.method} {request.path} here."
        )

    # --- refusals and the login form ------------------------------------------

    def _refused(self, request: Request, status: int, why: str) -> Response:
        logger.warning(
            "HTTP %s %s from %s refused: %s", request.method, request.path, request.client, why
        )
        return messages.text(status, f"refused: {why}\n")

    def _unauthorized(self, request: Request, why: str) -> Response:
        logger.warning(
            "HTTP %s %s from %s refused: %s", request.method, request.path, request.client, why
        )
        challenge = ("WWW-Authenticate", 'Bearer realm="runtara-core"')
        if request.segments[:1] != ["instances"] and request.segments:
            return Response(401, f"refused: {why}\n".encode(), headers=(challenge,))
        form = self._login_form(_here(request), None)
        return Response(401, form.body, form.content_type, (challenge,))

    def _login(self, request: Request) -> Response:
        if not self.access.required:
            return messages.redirect("/instances")
        if request.method != "POST":
            return self._login_form(_safe_next(request.query.get("next", "")), None)
        target = _safe_next(request.form.get("next", ""))
        if self.access.cross_site(request):
            return self._refused(request, 403, "a login sent from another site's page")
        if not self.access.is_token(request.form.get("token", "")):
            logger.warning("HTTP login from %s refused: wrong token", request.client)
            form = self._login_form(target, "That is not this server's token.")
            return Response(401, form.body, form.content_type)
        logger.info("HTTP login from %s", request.client)
        cookie = (
            f"{access.COOKIE}={self.access.session()}; Path=/; HttpOnly; SameSite=Strict; "
            "Max-Age=43200"
        )
        return messages.redirect(target, ("Set-Cookie", cookie))

    def _login_form(self, target: str, problem: str | None) -> Response:
        page = templating.render("login.html", refresh=None, now=None, next=target, problem=problem)
        return messages.html(page)


def _holds_nul(request: Request) -> bool:
    texts = (*request.segments, *request.query.values(), *request.form.values())
    return any("\x00" in text for text in texts)


def _here(request: Request) -> str:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in request.query.items())
    return request.path + (f"?{query}" if query else "")


def _safe_next(target: str) -> str:
    """Where to go after logging in: a path of this server only (never ``//host``)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/instances"
