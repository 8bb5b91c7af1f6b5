"""A signal too large for any reply is refused when sent, directly and through a server."""

from __future__ import annotations

from tests.support import RpcClient, ServerProcess, run_cli, sqlite_url


def test_a_70_mb_custom_signal_is_refused_with_the_limit_both_ways(tmp_path):
    url = sqlite_url(tmp_path)
    server = ServerProcess("--database-url", url, "--management-addr", "127.0.0.1:0", cwd=tmp_path)
    client = RpcClient(server.address)
    try:
        assert client.register("order-17").success
        payload = tmp_path / "payload.bin"
        payload.write_bytes(bytes(70 * 1024 * 1024))
        host, port = server.management_address()
        for target in (["--database-url", url], ["--server", f"{host}:{port}"]):
            sent = run_cli(
                "custom-signal",
                "order-17",
                "approve",
                "--payload",
                f"@{payload}",
                *target,
                cwd=tmp_path,
            )
            assert sent.returncode == 1, sent
            assert "could never be delivered" in sent.stderr and "at most" in sent.stderr
            assert "Traceback" not in sent.stderr
        reply = client.poll("order-17", "approve")
        assert not reply.HasField("custom_signal")  # nothing was stored
    finally:
        client.close()
        server.signal()
        assert server.wait() == 0
