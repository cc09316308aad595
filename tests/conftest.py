"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, globalLogPublisher


@pytest.fixture(autouse=True)
def fail_on_logged_errors() -> Iterator[None]:
    """Fail any test during which Twisted logged an error or a failure.

    Unhandled errors in Deferreds and ``log.failure`` calls would otherwise
    pass silently; a test that expects one clears ``errors`` itself.
    """
    errors: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)
    if errors:
        first = errors[0]
        failure = first.get("log_failure")
        detail = failure.getTraceback() if failure is not None else first
        pytest.fail(f"{len(errors)} error(s) logged during the test:\n{detail}")
