"""OpenTelemetry traces: the ids derived from the instance, the attempt spans a
launching server exports (one at the start of each attempt too), the step spans
of the Python SDK under TRACEPARENT, and nothing of OpenTelemetry without it."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from runtara import records, tracing
from tests.integration.test_launcher import Launching
from tests.support import sqlite_url, wait_for

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "TRACEPARENT",
)


@pytest.fixture
def no_otel_env(monkeypatch):
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- ids and TRACEPARENT ------------------------------------------------------


def test_the_trace_id_is_the_first_16_bytes_of_sha256_of_the_instance_id():
    expected = hashlib.sha256(b"runtara:order-17").digest()[:16]
    assert tracing.trace_id("order-17") == int.from_bytes(expected, "big")
    assert tracing.trace_id_hex("order-17") == expected.hex()
    assert tracing.trace_id("order-17") == tracing.trace_id("order-17")
    assert tracing.trace_id("order-17") != tracing.trace_id("order-18")
    assert 0 < tracing.trace_id("") < 2**128


def test_attempt_span_ids_are_fixed_by_the_instance_and_the_attempt():
    first = tracing.attempt_span_id("order-17", 1)
    assert first == tracing.attempt_span_id("order-17", 1)
    assert 0 < first < 2**64
    assert (
        len({first, tracing.attempt_span_id("order-17", 2), tracing.attempt_span_id("x", 1)}) == 3
    )


def test_traceparent_is_w3c_and_reads_back():
    trace, span = tracing.trace_id("order-17"), tracing.attempt_span_id("order-17", 3)
    text = tracing.traceparent(trace, span)
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", text)
    assert text == f"00-{tracing.trace_id_hex('order-17')}-{span:016x}-01"
    assert tracing.parse_traceparent(text) == (trace, span, True)
    assert tracing.traceparent(1, 2, sampled=False) == f"00-{1:032x}-{2:016x}-00"
    assert tracing.parse_traceparent(tracing.traceparent(1, 2, False)) == (1, 2, False)
    for bad in (None, "", "00-xyz", f"ff-{1:032x}-{2:016x}-01", f"00-{0:032x}-{2:016x}-01"):
        assert tracing.parse_traceparent(bad) is None


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_traces_are_wanted_when_an_exporter_or_endpoint_is_configured(env, on):
    assert tracing.wanted(env) is on
    if not on:
        assert tracing.setup("x", env) is None


def test_an_attempt_span_is_exported_at_its_start_and_at_its_end(monkeypatch):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_exporter", lambda name, env: exported)
    traces = tracing.setup("runtara-core", {"OTEL_TRACES_EXPORTER": "memory"})
    assert traces is not None
    span = traces.attempt("order-17", "acme", 2)
    traces.flush()
    (started,) = exported.get_finished_spans()
    trace, span_id = tracing.trace_id("order-17"), tracing.attempt_span_id("order-17", 2)
    assert started.name == "runtara.attempt.started"
    assert started.context.trace_id == trace and started.parent.span_id == span_id
    assert dict(started.attributes) == {
        "runtara.instance.id": "order-17",
        "runtara.tenant.id": "acme",
        "runtara.attempt": 2,
    }
    assert span.traceparent == tracing.traceparent(trace, span_id)
    span.end("exited with code 1", code=1, outcome="relaunch", failing=True)
    traces.flush()
    ended = exported.get_finished_spans()[-1]
    assert ended.name == "runtara.attempt" and ended.parent is None
    assert (ended.context.trace_id, ended.context.span_id) == (trace, span_id)
    assert ended.attributes["runtara.exit.code"] == 1
    assert ended.attributes["runtara.outcome"] == "relaunch"
    assert ended.status.status_code.name == "ERROR"
    assert ended.resource.attributes["service.name"] == "runtara-core"
    traces.shutdown()


# --- a server, its launcher and a workflow, exporting to a receiver here -----


class Receiver:
    """An OTLP/HTTP endpoint on loopback keeping the spans it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        received: list[dict] = []
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                with lock:
                    received.extend(_spans_of(request))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self._received, self._lock = received, lock
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def spans(self, trace: int) -> list[dict]:
        with self._lock:
            return [s for s in self._received if s["trace_id"] == trace]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _spans_of(request) -> list[dict]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    {
                        "name": span.name,
                        "trace_id": int.from_bytes(span.trace_id, "big"),
                        "span_id": int.from_bytes(span.span_id, "big"),
                        "parent": int.from_bytes(span.parent_span_id, "big") or None,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "service": resource.get("service.name"),
                        "status": span.status.code,
                        "events": [event.name for event in span.events],
                    }
                )
    return found


def _value(value):
    return getattr(value, value.WhichOneof("value"))


@pytest.fixture
def receiver():
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    running = Receiver()
    yield running
    running.close()


def test_attempt_and_step_spans_join_the_instance_trace(tmp_path, no_otel_env, receiver):
    no_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    no_otel_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    launching = Launching(tmp_path, sqlite_url(tmp_path))
    try:
        flag = tmp_path / "flag"
        instance_id = launching.start("--tenant", "acme", script="traced.py", FLAG=str(flag))
        trace = tracing.trace_id(instance_id)
        attempt_span = tracing.attempt_span_id(instance_id, 1)

        def named(name: str) -> list[dict]:
            return [s for s in receiver.spans(trace) if s["name"] == name]

        # Seen while the instance runs (it waits for the flag).
        (started,) = wait_for(lambda: named("runtara.attempt.started"), 30)
        assert not launching.instance(instance_id).status.is_terminal
        assert not named("runtara.attempt")
        assert started["parent"] == attempt_span
        assert started["service"] == "runtara-core"
        assert started["attributes"] == {
            "runtara.instance.id": instance_id,
            "runtara.tenant.id": "acme",
            "runtara.attempt": 1,
        }

        flag.touch()
        assert launching.finished(instance_id).status is records.InstanceStatus.COMPLETED
        wait_for(lambda: named("runtara.attempt") and named("first") and named("second"), 30)
        (attempt,) = named("runtara.attempt")
        assert attempt["span_id"] == attempt_span and attempt["parent"] is None
        assert attempt["attributes"]["runtara.instance.id"] == instance_id
        assert attempt["attributes"]["runtara.tenant.id"] == "acme"
        assert attempt["attributes"]["runtara.attempt"] == 1
        assert attempt["attributes"]["runtara.exit.code"] == 0
        assert attempt["attributes"]["runtara.outcome"] == "finished"
        assert attempt["status"] != 2  # not ERROR
        for name, checkpoint in (("first", "durable::first::1"), ("second", "durable::second::2")):
            (step,) = named(name)
            assert step["parent"] == attempt_span
            assert step["service"] == "runtara-workflow"
            assert step["attributes"]["runtara.instance.id"] == instance_id
            assert step["attributes"]["runtara.checkpoint.id"] == checkpoint
            assert step["attributes"]["runtara.step.stored"] is False
    finally:
        launching.stop()


# --- without OpenTelemetry ---------------------------------------------------

BLOCKER = """
import os, sys

class _NoOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            with open(os.environ["IMPORTS_TRIED"], "a") as tried:
                tried.write(f"{os.getpid()} {name}\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoOpenTelemetry())
"""


@pytest.mark.parametrize("asked", [False, True], ids=["otel-not-asked", "otel-asked"])
def test_without_the_extra_a_server_and_its_workflows_run_as_before(tmp_path, no_otel_env, asked):
    """Every process (server, CLI, workflow) finds no opentelemetry; without OTEL_*
    none even tries to import it; with OTEL_* the server says what to install."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    tried = tmp_path / "imports-tried.txt"
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    no_otel_env.setenv("PYTHONPATH", path)
    no_otel_env.setenv("IMPORTS_TRIED", str(tried))
    if asked:
        no_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    launching = Launching(tmp_path / "server", sqlite_url(tmp_path))
    try:
        flag = tmp_path / "flag"
        flag.touch()
        instance_id = launching.start(script="traced.py", FLAG=str(flag))
        assert launching.finished(instance_id).status is records.InstanceStatus.COMPLETED
        output = launching.server.output()
    finally:
        launching.stop()
    if asked:
        assert "install runtara-core[otel]" in output
        pids = {line.split()[0] for line in tried.read_text().splitlines()}
        assert pids == {str(launching.server.process.pid)}  # the workflow had no TRACEPARENT
    else:
        assert not tried.exists(), tried.read_text()
        assert "opentelemetry" not in output.lower()


def test_the_tracing_module_and_the_sdk_import_no_opentelemetry(tmp_path):
    code = (
        "import sys; import runtara.tracing, runtara.sdk, runtara.launcher.launcher; "
        "sys.exit(any(m.split('.')[0] == 'opentelemetry' for m in sys.modules))"
    )
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=Path.cwd()).returncode == 0


def test_the_console_shows_the_instance_trace_id(tmp_path):
    from tests.browser.serving import HttpServing
    from tests.support import RpcClient

    running = HttpServing(tmp_path, "--no-launcher", "--processes", "1")
    try:
        client = RpcClient(running.server.address)
        assert client.register("traced-one").success
        client.close()
        page = running.get("/instances/traced-one", **running.session("read"))
        assert page.status == 200
        assert tracing.trace_id_hex("traced-one") in page.text
    finally:
        assert running.stop() == 0
