"""OpenTelemetry traces, when the ``otel`` extra is installed and configured.

Everything here works without OpenTelemetry: the trace id of an instance, the
span ids of its attempts and the W3C ``traceparent`` text are computed with
hashlib, and :func:`setup` imports the OpenTelemetry SDK only once the
environment asks for traces. Without the extra, or with traces not asked for,
nothing of ``opentelemetry`` is imported and every hook is one ``None`` check.

Traces are on when all of these hold (:func:`wanted`, then :func:`setup`):

- ``OTEL_SDK_DISABLED`` is not ``true``;
- ``OTEL_TRACES_EXPORTER`` is not ``none`` (unset means ``otlp``);
- an exporter or an endpoint is given: ``OTEL_TRACES_EXPORTER`` is set, or
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
  (so installing the extra alone sends nothing anywhere);
- ``opentelemetry-sdk`` can be imported (and, for ``otlp``, the OTLP/HTTP
  exporter, or the gRPC one when ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``).

The rest of the ``OTEL_*`` variables (service name, resource attributes,
sampler, batch delays, headers, timeouts) are the OpenTelemetry SDK's own.

One trace per instance: its id is the first 16 bytes of
``sha256(b"runtara:" + instance id)``, so every attempt, on any server, and
every step its processes run join the same trace, and anyone can find it from
the instance id alone. Each launch attempt is a span ``runtara.attempt``
whose id is derived the same way from the instance id and the attempt number,
so a server that adopts a running process after a restart ends the span its
predecessor began. A span is exported when it ends; for an attempt to be seen
while it runs, a zero-duration child span ``runtara.attempt.started`` with the
same attributes is exported at once when the attempt starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

TRACEPARENT = "TRACEPARENT"
"""The variable a launched process finds its attempt span's context in (W3C Trace Context)."""

ATTEMPT_SPAN = "runtara.attempt"
ATTEMPT_STARTED_SPAN = "runtara.attempt.started"

INSTANCE_ID = "runtara.instance.id"
TENANT_ID = "runtara.tenant.id"
ATTEMPT = "runtara.attempt"
CHECKPOINT_ID = "runtara.checkpoint.id"
ADOPTED = "runtara.adopted"
EXIT_CODE = "runtara.exit.code"
EXIT_SIGNAL = "runtara.exit.signal"
EXIT_DESCRIPTION = "runtara.exit.description"
OUTCOME = "runtara.outcome"
STEP_NAME = "runtara.step.name"
STEP_STORED = "runtara.step.stored"
"""True when the step's result came from its checkpoint and the function did not run."""

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRUE = ("true", "1", "yes", "on")


def trace_id(instance_id: str) -> int:
    """The instance's trace id: the first 16 bytes of sha256(b"runtara:" + id), never 0."""
    value = int.from_bytes(_digest(b"runtara:" + instance_id.encode())[:16], "big")
    return value or 1


def trace_id_hex(instance_id: str) -> str:
    """:func:`trace_id` as the 32 hex digits tracing backends show."""
    return f"{trace_id(instance_id):032x}"


def attempt_span_id(instance_id: str, attempt: int) -> int:
    """The span id of attempt ``attempt``: the first 8 bytes of
    sha256(b"runtara:attempt:<attempt>:" + id), never 0."""
    data = f"runtara:attempt:{attempt}:".encode() + instance_id.encode()
    return int.from_bytes(_digest(data)[:8], "big") or 1


def traceparent(trace: int, span: int, sampled: bool = True) -> str:
    """The W3C ``traceparent`` text: ``00-<trace id>-<parent span id>-<flags>``."""
    return f"00-{trace:032x}-{span:016x}-{'01' if sampled else '00'}"


def parse_traceparent(text: str | None) -> tuple[int, int, bool] | None:
    """(trace id, span id, sampled) of a ``traceparent``; None when it is not one."""
    match = _TRACEPARENT.match((text or "").strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    if match.group(1) == "00" and match.group(5):
        return None
    trace, span = int(match.group(2), 16), int(match.group(3), 16)
    if not trace or not span:
        return None
    return trace, span, bool(int(match.group(4), 16) & 1)


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """The ``OTEL_*`` variables ask for traces (see the module); imports nothing."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = _exporters(env)
    if not exporters:
        return False
    return bool(
        env.get("OTEL_TRACES_EXPORTER", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def _exporters(env: Mapping[str, str]) -> list[str]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    names = [n for n in names if n]
    return [] if not names or "none" in names else names


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ns(seconds: float | None = None) -> int:
    return time.time_ns() if seconds is None else int(seconds * 1e9)


class Tracing:
    """A tracer provider of its own, with the exporters the environment names.

    Its methods never raise: a tracing failure is logged and forgotten.
    """

    def __init__(self, provider: Any, chosen: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("runtara")
        self._chosen = chosen
        """The id generator's ContextVar: the ids the next span takes."""

    # --- the launcher's side ------------------------------------------------

    def attempt(
        self,
        instance_id: str,
        tenant_id: str,
        attempt: int,
        start_ns: int | None = None,
        *,
        adopted: bool = False,
    ) -> AttemptSpan | None:
        """Begin the span of an attempt (and, unless ``adopted``, export its
        ``runtara.attempt.started`` span now)."""
        try:
            attributes = {INSTANCE_ID: instance_id, TENANT_ID: tenant_id, ATTEMPT: attempt}
            trace, span_id = trace_id(instance_id), attempt_span_id(instance_id, attempt)
            token = self._chosen.set((trace, span_id))
            try:
                span = self.tracer.start_span(
                    ATTEMPT_SPAN,
                    context=self._trace.set_span_in_context(self._trace.INVALID_SPAN),
                    kind=self._trace.SpanKind.INTERNAL,
                    attributes={**attributes, ADOPTED: adopted},
                    start_time=start_ns or _ns(),
                )
            finally:
                self._chosen.reset(token)
            if not adopted:
                now = start_ns or _ns()
                context = self._trace.set_span_in_context(span)
                marker = self.tracer.start_span(
                    ATTEMPT_STARTED_SPAN, context=context, attributes=attributes, start_time=now
                )
                marker.end(end_time=now)
            return AttemptSpan(self, span)
        except Exception:
            logger.warning("tracing: cannot begin the span of an attempt", exc_info=True)
            return None

    # --- the SDK's side ---------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str, instance_id: str, checkpoint_id: str) -> Iterator[Any]:
        """A span around a durable step, current while it runs, under the process's
        ``TRACEPARENT`` (or the span current in the caller)."""
        context = None
        if self._trace.get_current_span() is self._trace.INVALID_SPAN:
            context = _parent_context(self._trace, os.environ.get(TRACEPARENT))
        attributes = {STEP_NAME: name, INSTANCE_ID: instance_id, CHECKPOINT_ID: checkpoint_id}
        with self.tracer.start_as_current_span(name, context=context, attributes=attributes) as s:
            yield s

    def flush(self, timeout_ms: int = 5000) -> None:
        try:
            self.provider.force_flush(timeout_ms)
        except Exception:
            logger.warning("tracing: flushing spans failed", exc_info=True)

    def shutdown(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:
            logger.warning("tracing: shutting down failed", exc_info=True)


class AttemptSpan:
    """The span of one attempt, from its start to its end."""

    def __init__(self, tracing: Tracing, span: Any) -> None:
        self._tracing = tracing
        self.span = span

    @property
    def traceparent(self) -> str:
        context = self.span.get_span_context()
        return traceparent(context.trace_id, context.span_id, context.trace_flags.sampled)

    def end(
        self,
        description: str,
        *,
        code: int | None = None,
        signal: int | None = None,
        outcome: str | None = None,
        failing: bool = False,
    ) -> None:
        """End it with how the process ended (``failing``: an ERROR status)."""
        try:
            from opentelemetry.trace import Status, StatusCode

            attributes: dict[str, Any] = {EXIT_DESCRIPTION: description}
            if code is not None:
                attributes[EXIT_CODE] = code
            if signal is not None:
                attributes[EXIT_SIGNAL] = signal
            if outcome is not None:
                attributes[OUTCOME] = outcome
            self.span.set_attributes(attributes)
            if failing:
                self.span.set_status(Status(StatusCode.ERROR, description))
            self.span.end()
        except Exception:
            logger.warning("tracing: cannot end the span of an attempt", exc_info=True)


def _parent_context(trace: Any, text: str | None) -> Any:
    parsed = parse_traceparent(text)
    if parsed is None:
        return None
    trace_id_, span_id, sampled = parsed
    parent = trace.SpanContext(
        trace_id_,
        span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def setup(
    default_service: str, environ: Mapping[str, str] | None = None, *, make_global: bool = False
) -> Tracing | None:
    """Tracing as the environment asks (None: off, and nothing imported unless
    :func:`wanted` said yes). ``make_global``: also the process's global tracer
    provider, when none was set, so that the workflow's own spans nest in steps."""
    env = os.environ if environ is None else environ
    if not wanted(env):
        return None
    try:
        import contextvars

        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
    except ImportError as error:
        logger.warning(
            "OTEL_* asks for traces but OpenTelemetry is not installed (%s): "
            "install runtara-core[otel]",
            error,
        )
        return None
    chosen: contextvars.ContextVar = contextvars.ContextVar("runtara_span_ids", default=None)

    class ChosenIds(IdGenerator):
        """Random ids, except for a span begun with its ids set in ``chosen``."""

        def __init__(self) -> None:
            self._random = RandomIdGenerator()

        def generate_span_id(self) -> int:
            ids = chosen.get()
            return ids[1] if ids else self._random.generate_span_id()

        def generate_trace_id(self) -> int:
            ids = chosen.get()
            return ids[0] if ids else self._random.generate_trace_id()

    exporters = []
    for name in _exporters(env):
        exporter = _exporter(name, env)
        if exporter is not None:
            exporters.append(exporter)
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    provider = TracerProvider(resource=resource, id_generator=ChosenIds())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if make_global and type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(provider)
    return Tracing(provider, chosen)


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    try:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        if name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ).strip()
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            return OTLPSpanExporter()
    except ImportError as error:
        logger.warning("tracing: exporter %r is not installed: %s", name, error)
        return None
    logger.warning("tracing: unknown OTEL_TRACES_EXPORTER %r (otlp, console or none)", name)
    return None


_sdk_state: list[Tracing | None] = []


def for_steps() -> Tracing | None:
    """The tracing of a workflow process's durable steps: on when it was given a
    ``TRACEPARENT`` and the environment asks for traces; decided once."""
    if not _sdk_state:
        on = bool(os.environ.get(TRACEPARENT)) and wanted()
        _sdk_state.append(setup("runtara-workflow", make_global=True) if on else None)
    return _sdk_state[0]
