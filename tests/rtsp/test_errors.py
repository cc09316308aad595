"""Tests of the RTSP error classes and reason phrases."""

from __future__ import annotations

import pytest

from hostednat.rtsp.errors import (
    REASONS,
    BadTransport,
    BodyTooLarge,
    HeaderTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
    RtspError,
    UnsupportedVersion,
)


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (RemoteProtocolError, 400, "Bad Request"),
        (HeaderTooLarge, 400, "Bad Request"),
        (BodyTooLarge, 413, "Request Entity Too Large"),
        (UnsupportedVersion, 505, "RTSP Version Not Supported"),
        (BadTransport, 400, "Bad Request"),
        (LocalProtocolError, 500, "Internal Server Error"),
    ],
)
def test_error_classes_carry_their_status(
    error: type[RtspError], status: int, reason: str
) -> None:
    """Each error class knows the status and reason of its answer."""
    assert error.status == status
    assert error.reason == reason
    instance = error("detail")
    assert (instance.status, instance.reason, str(instance)) == (
        status,
        reason,
        "detail",
    )


def test_remote_error_with_other_status() -> None:
    """A status given to the constructor overrides the class default."""
    error = RemoteProtocolError("no such session", 454)

    assert error.status == 454
    assert error.reason == "Session Not Found"
    assert RemoteProtocolError.status == 400


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (200, "OK"),
        (453, "Not Enough Bandwidth"),
        (454, "Session Not Found"),
        (461, "Unsupported Transport"),
        (463, "Destination Prohibited"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Time-out"),
        (551, "Option Not Supported"),
        (553, "Proxy Unavailable"),
    ],
)
def test_reasons_table(status: int, reason: str) -> None:
    """The codes the proxy generates have their RFC reason phrases."""
    assert REASONS[status] == reason
