"""A workflow that completes with the input it was started with."""

from __future__ import annotations

from runtara import sdk


def workflow(instance: sdk.Instance):
    return {"got": instance.input}


if __name__ == "__main__":
    sdk.main(workflow)
