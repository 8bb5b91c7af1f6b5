"""A workflow script run with sdk.main that cannot start ends with one line saying
what to set, and no traceback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "workflows" / "echo_input.py"


def run_script(tmp_path: Path, **environ: str) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNTARA_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=tmp_path,
        env={
            **inherited,
            "RUNTARA_INSTANCE_ID": "order-17",
            "RUNTARA_TENANT_ID": "acme",
            "RUNTARA_HEARTBEAT_INTERVAL_MS": "0",
            **environ,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def bound_udp_address():
    """``host:port`` of a loopback UDP socket held open until leaving."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        yield "{}:{}".format(*held.getsockname())


def test_a_self_signed_server_without_skipping_verification_says_what_to_set(server, tmp_path):
    address = "{}:{}".format(*server.address)
    result = run_script(tmp_path, RUNTARA_SERVER_ADDR=address)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"echo_input.py: error: register_instance: the certificate of {address} does not "
        "verify: self-signed certificate; set RUNTARA_SKIP_CERT_VERIFICATION=true for a server "
        "with a self-signed certificate, as runtara-core serves by default (or "
        "RUNTARA_SERVER_NAME to the name its certificate is issued for)\n"
    )
    assert server.instance("order-17") is None


def test_a_host_name_for_the_server_is_a_configuration_error(tmp_path):
    result = run_script(tmp_path, RUNTARA_SERVER_ADDR="runtara.internal:8001")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "echo_input.py: error: RUNTARA_SERVER_ADDR='runtara.internal:8001': "
        "'runtara.internal:8001' is not IP:port ('runtara.internal' is not an IP address)\n"
    )


@pytest.mark.timeout(30)
def test_a_server_that_does_not_answer_is_one_line_and_exit_code_75(tmp_path):
    with bound_udp_address() as address:  # bound, so nothing else answers there
        result = run_script(
            tmp_path,
            RUNTARA_SERVER_ADDR=address,
            RUNTARA_SKIP_CERT_VERIFICATION="true",
            RUNTARA_CONNECT_TIMEOUT_MS="300",
            RUNTARA_SERVER_WAIT="0",
        )
    assert (result.returncode, result.stdout) == (75, "")
    assert result.stderr == (
        "stopping: lost the server, so nothing is reported; exit code 75 asks for a relaunch: "
        f"register_instance: no QUIC handshake with {address} within 0.3s; is runtara-core "
        f"serving there? (RUNTARA_SERVER_ADDR is {address})\n"
    )


@pytest.mark.timeout(30)
def test_a_server_that_never_comes_is_waited_for_then_one_line_and_exit_code_75(tmp_path):
    with bound_udp_address() as address:
        pass  # let go at once: nothing listens there any more
    result = run_script(
        tmp_path,
        RUNTARA_SERVER_ADDR=address,
        RUNTARA_SKIP_CERT_VERIFICATION="true",
        RUNTARA_SERVER_WAIT="1s",
    )
    assert (result.returncode, result.stdout) == (75, "")
    waiting, stopping = result.stderr.splitlines()
    assert waiting.startswith(
        f"the server at {address} is unreachable (ConnectFailed: register_instance: "
        f"cannot connect to {address}: Connection refused;"
    )
    assert waiting.endswith("waiting up to 1s for it, repeating the call")
    assert stopping.startswith("stopping: lost the server, so nothing is reported; exit code 75")
