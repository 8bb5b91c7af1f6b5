"""Generated credentials: strong, accepted as credentials, and safe on a command line."""

from __future__ import annotations

from runtara import credentials
from runtara.credentials import Role


def test_generated_tokens_are_valid_distinct_and_never_look_like_an_option():
    for _ in range(200):
        made = credentials.generate()
        for token in (made.read, made.operate):
            assert credentials.problem(token) is None
            assert not token.startswith("-")
            assert len(token) == 64
        assert made.read != made.operate
        assert made.role_of(made.operate) is Role.OPERATE
        assert made.role_of(made.read) is Role.READ
