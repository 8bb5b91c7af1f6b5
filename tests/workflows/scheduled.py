"""A workflow that completes with the tick it was started for, as its environment
and its input say."""

from __future__ import annotations

import os

from runtara import sdk


def workflow(instance: sdk.Instance):
    return {"env": os.environ.get("RUNTARA_SCHEDULED_AT"), "input": instance.input}


if __name__ == "__main__":
    sdk.main(workflow)
