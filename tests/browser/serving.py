"""A server process with its HTTP endpoint, and a plain HTTP client for it
(the HTTP, metrics and console tests share them)."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import urlencode

import attrs

from tests.support import ServerProcess, sqlite_url, wait_for


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    """By lower-case name."""
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class HttpServing:
    """``runtara-core`` in a child process on a fresh SQLite database (unless
    ``--database-url`` is among ``flags``; ``url`` is the one in use), with
    ``--http-addr`` on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, *flags: str, http_addr: str = "127.0.0.1:0") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        if "--database-url" in flags:
            self.url = flags[flags.index("--database-url") + 1]
            database: tuple[str, ...] = ()
        else:
            self.url = sqlite_url(folder)
            database = ("--database-url", self.url)
        self.server = ServerProcess(*database, "--http-addr", http_addr, *flags, cwd=folder)
        line = wait_for(
            lambda: next((line for line in self.server.log if "serving HTTP on" in line), None),
            30,
        )
        self.port = int(re.search(r"serving HTTP on \S+:(\d+):", line).group(1))
        self.base = f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: dict[str, str], **headers: str) -> Reply:
        return self.request(
            "POST",
            path,
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )

    def logged(self, text: str) -> str:
        """The first line of the server's log holding ``text`` (waits for it)."""
        return wait_for(lambda: next((line for line in self.server.log if text in line), None), 10)

    def stop(self) -> int:
        self.server.signal()
        return self.server.wait()
