"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, globalLogPublisher


@pytest.fixture(autouse=True)
def fail_on_logged_errors() -> Iterator[list[dict[str, Any]]]:
    """Fail a test that logged an error, unless it emptied the list itself.

    Unhandled errors in Deferreds and ``log.failure`` calls would otherwise
    pass silently.  The list of logged error events is handed to the test:
    one that kills a peer on purpose checks its ``diameter.peer.down`` events
    and removes them.
    """
    errors: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield errors
    finally:
        globalLogPublisher.removeObserver(observe)
    if errors:
        first = errors[0]
        failure = first.get("log_failure")
        detail = failure.getTraceback() if failure is not None else first
        pytest.fail(f"{len(errors)} error(s) logged during the test:\n{detail}")
