"""A server process with its HTTP endpoint and its two credentials, and a plain
HTTP client for it (the HTTP, metrics and console tests share them)."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import urlencode

import attrs

from tests.support import ServerProcess, sqlite_url, wait_for

READ_TOKEN = "read-token-of-the-tests"
OPERATE_TOKEN = "operate-token-of-the-tests"


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
    ``--http-addr`` on a free port of 127.0.0.1, and :data:`READ_TOKEN` and
    :data:`OPERATE_TOKEN` for credentials."""

    tokens = {"read": READ_TOKEN, "operate": OPERATE_TOKEN}

    def __init__(self, folder: Path, *flags: str, http_addr: str = "127.0.0.1:0") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        if "--database-url" in flags:
            self.url = flags[flags.index("--database-url") + 1]
            database: tuple[str, ...] = ()
        else:
            self.url = sqlite_url(folder)
            database = ("--database-url", self.url)
        credentials = {"RUNTARA_MANAGEMENT_TOKEN": OPERATE_TOKEN, "RUNTARA_READ_TOKEN": READ_TOKEN}
        self.server = ServerProcess(
            *database, "--http-addr", http_addr, *flags, cwd=folder, env=credentials
        )
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
        source: str | None = None,
    ) -> Reply:
        """``source``: the loopback address to send from (each is a client of its own
        for the server's limits), 127.0.0.1 when None."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(source, 0) if source else None
        )
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

    def post(
        self, path: str, fields: dict[str, str], *, source: str | None = None, **headers: str
    ) -> Reply:
        return self.request(
            "POST",
            path,
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
            source=source,
        )

    def send(self, method: str, path: str, fields: dict[str, str] | None, **headers: str) -> Reply:
        """A GET of ``path`` (``fields`` None), or a POST of ``fields`` to it."""
        if method == "GET":
            return self.get(path, **headers)
        return self.post(path, fields, **headers)

    def bearer(self, role: str) -> dict[str, str]:
        """The header that carries the ``role`` credential (read or operate)."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def session(self, role: str) -> dict[str, str]:
        """The header that carries a console session of ``role``, opened by logging in."""
        login = self.post("/login", {"token": self.tokens[role], "next": "/instances"})
        assert login.status == 303, login.text
        return {"Cookie": login.headers["set-cookie"].split(";", 1)[0]}

    def logged(self, text: str) -> str:
        """The first line of the server's log holding ``text`` (waits for it)."""
        return wait_for(lambda: next((line for line in self.server.log if text in line), None), 10)

    def stop(self) -> int:
        self.server.signal()
        return self.server.wait()
