"""What ``runtara-core start`` stores: how to launch an instance, and its input.

A launch specification is the command and its arguments, the working folder,
extra environment variables and the restart policy (how many failed attempts
in a row without progress fail the instance), and where it waits to be claimed
(its queue, concurrency key and priority). It is stored as JSON next to the
instance; the input is stored as the launch's ``input`` bytes.
"""

from __future__ import annotations

import json
import os
import re

import attrs

from runtara import errors, limits
from runtara.limits import KiB, MiB
from runtara.records import DEFAULT_QUEUE

MAX_SPEC_SIZE = 64 * KiB
"""Largest launch specification (command, arguments, folder and environment, as JSON)."""
MAX_INPUT_SIZE = 16 * MiB
"""Largest input an instance may be started with."""
MAX_FAILURES = 1000
DEFAULT_MAX_FAILURES = 3
MAX_PRIORITY = 1_000_000
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
    max_failures: int = DEFAULT_MAX_FAILURES
    """Failed attempts in a row without progress after which the instance is failed."""
    queue: str = DEFAULT_QUEUE
    key: str | None = None
    """Its concurrency key: the queue's per-key limit counts the instances of a key."""
    priority: int = 0
    """Higher is claimed first in its queue."""

    def to_json(self) -> str:
        data: dict[str, object] = {
            "command": list(self.command),
            "cwd": self.cwd,
            "env": self.env,
            "max_failures": self.max_failures,
        }
        # Written only when set, so a specification stored before queues existed
        # reads back as the same text (an idempotent start compares the text).
        if self.queue != DEFAULT_QUEUE:
            data["queue"] = self.queue
        if self.key is not None:
            data["key"] = self.key
        if self.priority:
            data["priority"] = self.priority
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LaunchSpec:
        """The stored specification; ConfigError saying what is wrong with a malformed
        one (specifications sent by hand through the management protocol included)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise errors.ConfigError(f"the launch specification is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise errors.ConfigError("the launch specification must be a JSON object")
        command = data.get("command")
        if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
            raise errors.ConfigError("the launch specification's command must be a list of text")
        cwd = data.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise errors.ConfigError("the launch specification's cwd must be text or null")
        env = data.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in env.items()
        ):
            raise errors.ConfigError("the launch specification's env must map text to text")
        # max_attempts: the name stored before the restart policy counted failures
        max_failures = data.get("max_failures", data.get("max_attempts", DEFAULT_MAX_FAILURES))
        if not isinstance(max_failures, int) or isinstance(max_failures, bool):
            raise errors.ConfigError("the launch specification's max_failures must be an integer")
        queue = data.get("queue", DEFAULT_QUEUE)
        key = data.get("key")
        priority = data.get("priority", 0)
        if not isinstance(queue, str) or not (key is None or isinstance(key, str)):
            raise errors.ConfigError("the launch specification's queue and key must be text")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise errors.ConfigError("the launch specification's priority must be an integer")
        return cls(tuple(command), cwd, dict(env), max_failures, queue, key, priority)


def checked(spec: LaunchSpec) -> LaunchSpec:
    """The spec, or ConfigError saying what is wrong with it (the message names the limit)."""
    if not spec.command or not spec.command[0]:
        raise errors.ConfigError("start: a command to run is required (after --)")
    if any("\x00" in part for part in spec.command):
        raise errors.ConfigError("start: the command must not contain NUL characters")
    if spec.cwd is not None and ("\x00" in spec.cwd or not os.path.isabs(spec.cwd)):
        raise errors.ConfigError(f"start: --cwd {spec.cwd!r} must be an absolute folder")
    for name, value in spec.env.items():
        if not name or "=" in name or "\x00" in name + value:
            raise errors.ConfigError(f"start: --env {name}={value!r} is not NAME=VALUE")
        if RESERVED_ENV.match(name):
            raise errors.ConfigError(f"start: --env {name} is set by the launcher itself")
    if not 1 <= spec.max_failures <= MAX_FAILURES:
        raise errors.ConfigError(f"start: --max-failures must be from 1 to {MAX_FAILURES}")
    for name, value in (("queue", spec.queue), ("key", spec.key)):
        if value is not None:
            problem = f"{name} is empty" if not value else limits.text_problem(name, value)
            if problem is not None:
                raise errors.ConfigError(f"start: --{name}: {problem}")
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise errors.ConfigError(
            f"start: --priority must be from {-MAX_PRIORITY} to {MAX_PRIORITY}"
        )
    size = len(spec.to_json().encode("utf-8"))
    if size > MAX_SPEC_SIZE:
        raise errors.ConfigError(
            f"start: the launch specification is {size} bytes; at most {MAX_SPEC_SIZE} "
            "(64 KiB) are allowed for the command, its arguments, folder and environment"
        )
    return spec


def parse_env(assignments: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` texts as a mapping; ConfigError for one without ``=``."""
    env = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals:
            raise errors.ConfigError(f"--env {assignment!r} is not NAME=VALUE")
        env[name] = value
    return env


def with_env(stored: str, env: dict[str, str]) -> str:
    """The stored specification (JSON) with ``env`` set on top of its variables,
    checked; ConfigError if the result is not a valid specification."""
    spec = LaunchSpec.from_json(stored)
    return checked(attrs.evolve(spec, env={**spec.env, **env})).to_json()


def checked_input(data: bytes) -> bytes:
    if len(data) > MAX_INPUT_SIZE:
        raise errors.ConfigError(
            f"start: the input is {len(data)} bytes; at most {MAX_INPUT_SIZE} (16 MiB) are allowed"
        )
    return data
