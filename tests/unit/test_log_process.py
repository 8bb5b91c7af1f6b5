"""A server process of several names itself in each log line it writes."""

from __future__ import annotations

import json
import logging

from runtara import logging_setup


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("runtara", logging.INFO, __file__, 1, message, (), None)


def test_text_lines_name_the_process_after_the_logger():
    formatter = logging.Formatter(logging_setup.text_format(3))
    assert formatter.format(record("stopped")).endswith(" INFO runtara [process 3]: stopped")
    alone = logging.Formatter(logging_setup.text_format(None))
    assert alone.format(record("stopped")).endswith(" INFO runtara: stopped")


def test_json_lines_carry_the_process_number():
    assert json.loads(logging_setup.JsonFormatter(0).format(record("up")))["process"] == 0
    assert "process" not in json.loads(logging_setup.JsonFormatter().format(record("up")))
