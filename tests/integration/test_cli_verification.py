"""The tools check whom they talk to: a pinned fingerprint, a CA file, or an
explicit --insecure-skip-verify; a token never goes to a server nobody checked."""

from __future__ import annotations

import pytest

from runtara import cli, config
from runtara.server import tls
from tests.support import ServerProcess

TOKEN = "s3cret-s3cret-s3cret"


class Guarded:
    """A server with its own certificate and a management token."""

    def __init__(self, folder) -> None:
        self.identity = tls.self_signed()
        self.cert = folder / "server.pem"
        tls.write_pem(self.identity, self.cert, folder / "server.key")
        self.process = ServerProcess(
            *("--database-url", str(folder / "runtara.db")),
            *("--tls-cert", str(self.cert), "--tls-key", str(folder / "server.key")),
            *("--management-addr", "127.0.0.1:0", "--management-token", TOKEN),
            cwd=folder,
        )
        host, port = self.process.management_address()
        self.address = f"{host}:{port}"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    server = Guarded(tmp_path_factory.mktemp("guarded"))
    yield server
    server.process.signal()
    server.process.wait()


@pytest.fixture
def tool(guarded, monkeypatch, capsys):
    """Runs `instances --server` against the guarded server with more arguments:
    (exit code, stdout, stderr)."""
    for setting in config.TOOL_SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)

    def run(*args: str, **environ: str):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        code = cli.main(["instances", "--server", guarded.address, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_right_fingerprint_is_trusted_in_either_spelling(tool, guarded):
    fingerprint = guarded.identity.fingerprint
    assert tool("--fingerprint", fingerprint, "--token", TOKEN) == (0, "no instances\n", "")
    assert tool(
        RUNTARA_MANAGEMENT_FINGERPRINT=fingerprint.replace(":", "").lower(),
        RUNTARA_MANAGEMENT_TOKEN=TOKEN,
    ) == (0, "no instances\n", "")


def test_a_wrong_fingerprint_is_refused_before_the_token_is_sent(tool, guarded):
    right = guarded.identity.fingerprint
    wrong = ("00" if not right.startswith("00") else "11") + right[2:]
    code, out, err = tool("--fingerprint", wrong, "--token", "guess")
    assert (code, out) == (1, "")
    assert err == (
        f"runtara-core: error: the certificate of {guarded.address} has the SHA-256 "
        f"fingerprint {right}, not the pinned {wrong}; nothing was sent to it (check "
        "--fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT against the fingerprint the server "
        "logs at start)\n"
    )


def test_a_ca_file_of_the_servers_certificate_is_trusted(tool, guarded, tmp_path):
    assert tool("--ca-file", str(guarded.cert), "--token", TOKEN) == (0, "no instances\n", "")
    other = tmp_path / "other.pem"
    tls.write_pem(tls.self_signed(), other, tmp_path / "other.key")
    code, out, err = tool("--ca-file", str(other), "--token", TOKEN)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"runtara-core: error: the certificate of {guarded.address} does not verify "
        f"against {other}: "
    )
    assert err.endswith(
        "; nothing was sent to it (check --ca-file / RUNTARA_MANAGEMENT_CA_FILE and "
        "--server-name / RUNTARA_MANAGEMENT_SERVER_NAME)\n"
    )
    misnamed = tool("--ca-file", str(guarded.cert), "--server-name", "runtara.example")
    assert misnamed[0] == 1 and "doesn't match" in misnamed[2]


def test_without_a_check_a_token_is_not_sent_and_the_message_says_what_to_set(tool):
    assert tool(RUNTARA_MANAGEMENT_TOKEN=TOKEN) == (
        2,
        "",
        "runtara-core: error: --token / RUNTARA_MANAGEMENT_TOKEN is sent only to a server whose "
        "certificate is checked: set --fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT (the "
        "SHA-256 fingerprint the server logs at start) or --ca-file / "
        "RUNTARA_MANAGEMENT_CA_FILE, or --insecure-skip-verify / "
        "RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY to send it unchecked\n",
    )


def test_without_a_check_and_without_a_token_the_tool_connects_unchecked(tool, guarded):
    code, out, err = tool()
    assert (code, out) == (1, "")
    assert err == (
        f"runtara-core: error: server {guarded.address} refused the request: missing or wrong "
        "management credential\n"
    )


def test_skipping_verification_is_explicit_and_excludes_the_checks(tool, guarded):
    assert tool("--insecure-skip-verify", "--token", TOKEN) == (0, "no instances\n", "")
    assert tool(RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY="yes", RUNTARA_MANAGEMENT_TOKEN=TOKEN) == (
        0,
        "no instances\n",
        "",
    )
    code, _, err = tool("--insecure-skip-verify", "--fingerprint", guarded.identity.fingerprint)
    assert code == 2
    assert err == (
        "runtara-core: error: --insecure-skip-verify / RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY "
        "contradicts --fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT and --ca-file / "
        "RUNTARA_MANAGEMENT_CA_FILE: give one or the other\n"
    )


def test_a_bad_fingerprint_or_ca_file_is_a_usage_error(tool, tmp_path):
    code, _, err = tool("--fingerprint", "3A:91")
    assert code == 2
    assert err == (
        "runtara-core: error: --fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT: '3A:91' is not a "
        "SHA-256 fingerprint (64 hex digits, as the server logs it: 3A:91:...)\n"
    )
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    code, _, err = tool("--ca-file", str(tmp_path / "empty.pem"))
    assert code == 2
    assert err.endswith(f"'{tmp_path / 'empty.pem'}' holds no PEM certificate\n")
