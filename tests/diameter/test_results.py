"""The Result-Code table of reference 4.9."""

from __future__ import annotations

import pytest

from hostednat.diameter.results import (
    AccessProfileFailure,
    AuthorizationRejected,
    InsufficientResources,
    NoPeerAvailable,
    QosProfileFailure,
    RequestTimedOut,
    Result,
    check,
    failure_for,
)


@pytest.mark.parametrize(
    ("result", "status", "infrastructure"),
    [
        (Result(13019, 4041), 453, False),
        (Result(13019, 4043), 503, True),
        (Result(13019, 4044), 503, True),
        (Result(13019, 4045), 453, False),
        (Result(13019, 4046), 453, False),
        (Result(13019, 4047), 453, False),
        (Result(13019, 5041), 453, False),
        (Result(10415, 5061), 453, False),
        (Result(10415, 5062), 500, False),
        (Result(0, 3002), 503, True),
        (Result(0, 3004), 503, True),
        (Result(0, 3005), 503, True),
        (Result(0, 3003), 500, False),
        (Result(0, 4001), 503, True),
        (Result(0, 5003), 403, False),
        (Result(0, 5001), 500, False),
        (Result(0, 5012), 500, False),
    ],
)
def test_result_maps_to_rtsp_status(
    result: Result, status: int, infrastructure: bool
) -> None:
    """Each refusal code maps to its RTSP status and fail-open class."""
    failure = failure_for(result)
    assert failure.rtsp_status == status
    assert failure.infrastructure is infrastructure
    assert failure.result == result


def test_exception_classes_carry_their_code() -> None:
    """The exception classes know their wire code and vendor."""
    assert (InsufficientResources.result_code, InsufficientResources.vendor_id) == (
        4041,
        13019,
    )
    assert QosProfileFailure.result_code == 4045
    assert AccessProfileFailure.result_code == 4046
    assert AuthorizationRejected.result_code == 5003


def test_plain_result_code_finds_etsi_class() -> None:
    """An ETSI code sent as a plain Result-Code still maps to its class."""
    assert isinstance(failure_for(Result(0, 4046)), AccessProfileFailure)


def test_local_failures() -> None:
    """No peer is 503 and fail-open eligible; a timeout is 504."""
    assert NoPeerAvailable().rtsp_status == 503
    assert NoPeerAvailable().infrastructure
    assert RequestTimedOut().rtsp_status == 504
    assert RequestTimedOut().infrastructure


@pytest.mark.parametrize("code", [2001, 2002])
def test_success_passes_check(code: int) -> None:
    """2001 and 2002 are successes."""
    assert check(Result(0, code)).code == code


def test_missing_result_is_a_failure() -> None:
    """An answer without any result code is a permanent failure."""
    with pytest.raises(Exception) as caught:
        check(None)
    assert getattr(caught.value, "rtsp_status", None) == 500
