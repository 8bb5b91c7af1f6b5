"""What ``runtara-core start`` stores: how to launch an instance, and its input.

A launch specification is the command and its arguments, the working folder,
extra environment variables and the restart policy (how many attempts). It is
stored as JSON next to the instance and never changes afterwards; the input
is stored as the instance's ``input`` bytes.
"""

from __future__ import annotations

import json
import os
import re

import attrs

from runtara import errors
from runtara.limits import KiB, MiB

MAX_SPEC_SIZE = 64 * KiB
"""Largest launch specification (command, arguments, folder and environment, as JSON)."""
MAX_INPUT_SIZE = 16 * MiB
"""Largest input an instance may be started with."""
MAX_ATTEMPTS = 1000
RESERVED_ENV = re.compile(r"^RUNTARA_(INSTANCE_ID|TENANT_ID|SERVER_ADDR|CHECKPOINT_ID|INPUT_FILE)$")
"""Variables the launcher sets itself for every attempt."""


@attrs.frozen
class LaunchSpec:
    command: tuple[str, ...]
    """The program and its arguments (not run through a shell)."""
    cwd: str | None = None
    """Working folder of the process (None: the server's)."""
    env: dict[str, str] = attrs.field(factory=dict, hash=False)
    """Variables set on top of the server's environment."""
    max_attempts: int = 3
    """How many times the instance is launched before it is failed."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "command": list(self.command),
                "cwd": self.cwd,
                "env": self.env,
                "max_attempts": self.max_attempts,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> LaunchSpec:
        data = json.loads(text)
        return cls(tuple(data["command"]), data["cwd"], dict(data["env"]), data["max_attempts"])


def checked(spec: LaunchSpec) -> LaunchSpec:
    """The spec, or ConfigError saying what is wrong with it (the message names the limit)."""
    if not spec.command or not spec.command[0]:
        raise errors.ConfigError("start: a command to run is required (after --)")
    if any("\x00" in part for part in spec.command):
        raise errors.ConfigError("start: the command must not contain NUL characters")
    if spec.cwd is not None and not os.path.isabs(spec.cwd):
        raise errors.ConfigError(f"start: --cwd {spec.cwd!r} must be an absolute folder")
    for name, value in spec.env.items():
        if not name or "=" in name or "\x00" in name + value:
            raise errors.ConfigError(f"start: --env {name}={value!r} is not NAME=VALUE")
        if RESERVED_ENV.match(name):
            raise errors.ConfigError(f"start: --env {name} is set by the launcher itself")
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS:
        raise errors.ConfigError(f"start: --max-attempts must be from 1 to {MAX_ATTEMPTS}")
    size = len(spec.to_json().encode("utf-8"))
    if size > MAX_SPEC_SIZE:
        raise errors.ConfigError(
            f"start: the launch specification is {size} bytes; at most {MAX_SPEC_SIZE} "
            "(64 KiB) are allowed for the command, its arguments, folder and environment"
        )
    return spec


def checked_input(data: bytes) -> bytes:
    if len(data) > MAX_INPUT_SIZE:
        raise errors.ConfigError(
            f"start: the input is {len(data)} bytes; at most {MAX_INPUT_SIZE} (16 MiB) are allowed"
        )
    return data
