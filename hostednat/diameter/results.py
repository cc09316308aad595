"""Diameter outcomes as exceptions that carry their wire code.

Every refusal an AF can meet is a :class:`DiameterFailure` subclass with the
``result_code`` (and ``vendor_id`` for Experimental-Result codes) it stands
for, and the RTSP status the box gets (reference table 4.9, decision D10):

======================  =====================================  ===========
Result                  Meaning                                RTSP answer
======================  =====================================  ===========
4041, 4045, 4046, 4047  resources or profile refused (ETSI)    453
5041, 5061              modification / service info refused    453
3002, 3004, 3005, 4xxx  routing, overload, transient           503 + R-A
4043, 4044              commit / refresh failure (ETSI)        503 + R-A
5003                    authorization rejected                 403
5062, other 5xxx        permanent protocol error (our fault)   500
no peer                 every SPDF down or not yet open        503 + R-A
no answer in time       request timer Tx expired               504
======================  =====================================  ===========

``R-A`` is a Retry-After header.  ``infrastructure`` marks the failures
that say nothing about the subscriber (peers, overload, timeouts): only
those are admitted anyway in fail-open mode.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

DIAMETER_SUCCESS: Final = 2001
DIAMETER_LIMITED_SUCCESS: Final = 2002
DIAMETER_UNABLE_TO_DELIVER: Final = 3002
DIAMETER_TOO_BUSY: Final = 3004
DIAMETER_LOOP_DETECTED: Final = 3005
DIAMETER_UNKNOWN_PEER: Final = 3010
DIAMETER_ELECTION_LOST: Final = 4003
DIAMETER_AUTHORIZATION_REJECTED: Final = 5003
DIAMETER_UNKNOWN_SESSION_ID: Final = 5002
DIAMETER_UNABLE_TO_COMPLY: Final = 5012
DIAMETER_NO_COMMON_APPLICATION: Final = 5010

VENDOR_ETSI: Final = 13019
VENDOR_3GPP: Final = 10415


@attrs.frozen
class Result:
    """A Result-Code (``vendor_id`` 0) or an Experimental-Result."""

    vendor_id: int
    code: int

    @property
    def is_success(self) -> bool:
        """2xxx: granted (RFC 6733 7.1.2)."""
        return 2000 <= self.code < 3000

    def __str__(self) -> str:
        if self.vendor_id:
            return f"{self.code} (vendor {self.vendor_id})"
        return str(self.code)


class DiameterFailure(Exception):
    """A request that did not succeed; the base of the table."""

    result_code: ClassVar[int] = 0
    vendor_id: ClassVar[int] = 0
    rtsp_status: ClassVar[int] = 500
    rtsp_reason: ClassVar[str] = "Internal Server Error"
    infrastructure: ClassVar[bool] = False

    def __init__(self, detail: str = "", result: Result | None = None) -> None:
        self.result = result or Result(self.vendor_id, self.result_code)
        super().__init__(detail or f"Diameter result {self.result}")

    @property
    def cause(self) -> str:
        """Short text for logs and ``AdmissionRefused.cause``."""
        return f"diameter-{self.result.code}"


class Unavailable(DiameterFailure):
    """Routing or overload; another SPDF or a later try may succeed."""

    rtsp_status = 503
    rtsp_reason = "Service Unavailable"
    infrastructure = True


class UnableToDeliver(Unavailable):
    """3002 DIAMETER_UNABLE_TO_DELIVER."""

    result_code = DIAMETER_UNABLE_TO_DELIVER


class TooBusy(Unavailable):
    """3004 DIAMETER_TOO_BUSY."""

    result_code = DIAMETER_TOO_BUSY


class LoopDetected(Unavailable):
    """3005 DIAMETER_LOOP_DETECTED."""

    result_code = DIAMETER_LOOP_DETECTED


class TransientFailure(Unavailable):
    """Any other 4xxx of the base protocol (RFC 6733 7.1.4)."""


class CommitFailure(Unavailable):
    """4043 COMMIT_FAILURE (ES 283 026 6.3.2)."""

    result_code = 4043
    vendor_id = VENDOR_ETSI


class RefreshFailure(Unavailable):
    """4044 REFRESH_FAILURE (ES 283 026 6.3.2)."""

    result_code = 4044
    vendor_id = VENDOR_ETSI


class NotEnoughBandwidth(DiameterFailure):
    """Refusals an RTSP box understands as 453 (RFC 2326 11.3.8)."""

    rtsp_status = 453
    rtsp_reason = "Not Enough Bandwidth"


class InsufficientResources(NotEnoughBandwidth):
    """4041 INSUFFICIENT_RESOURCES: access or BGF resources unavailable."""

    result_code = 4041
    vendor_id = VENDOR_ETSI


class QosProfileFailure(NotEnoughBandwidth):
    """4045 QOS_PROFILE_FAILURE: QoS not compatible with the profile."""

    result_code = 4045
    vendor_id = VENDOR_ETSI


class AccessProfileFailure(NotEnoughBandwidth):
    """4046 ACCESS_PROFILE_FAILURE: beyond the subscriber access profile."""

    result_code = 4046
    vendor_id = VENDOR_ETSI


class PriorityNotGranted(NotEnoughBandwidth):
    """4047 PRIORITY_NOT_GRANTED."""

    result_code = 4047
    vendor_id = VENDOR_ETSI


class ModificationFailure(NotEnoughBandwidth):
    """5041 MODIFICATION_FAILURE: a modification refused for good."""

    result_code = 5041
    vendor_id = VENDOR_ETSI


class InvalidServiceInformation(NotEnoughBandwidth):
    """5061 INVALID_SERVICE_INFORMATION (TS 29.209)."""

    result_code = 5061
    vendor_id = VENDOR_3GPP


class FilterRestrictions(DiameterFailure):
    """5062 FILTER_RESTRICTIONS: a Flow-Description hostednat got wrong."""

    result_code = 5062
    vendor_id = VENDOR_3GPP


class AuthorizationRejected(DiameterFailure):
    """5003 DIAMETER_AUTHORIZATION_REJECTED: policy says no."""

    result_code = DIAMETER_AUTHORIZATION_REJECTED
    rtsp_status = 403
    rtsp_reason = "Forbidden"


class PermanentFailure(DiameterFailure):
    """Any other 5xxx (or 3xxx) answer: an interop bug, not the subscriber."""


class NoPeerAvailable(Unavailable):
    """No SPDF connection is open: refused locally, nothing was sent."""

    def __init__(self, detail: str = "no Diameter peer is open") -> None:
        super().__init__(detail)

    @property
    def cause(self) -> str:
        return "diameter-no-peer"


class RequestTimedOut(DiameterFailure):
    """No answer before the request timer Tx expired (reference D15)."""

    rtsp_status = 504
    rtsp_reason = "Gateway Time-out"
    infrastructure = True

    def __init__(self, detail: str = "no Diameter answer in time") -> None:
        super().__init__(detail)

    @property
    def cause(self) -> str:
        return "diameter-timeout"


class PeerFailed(Unavailable):
    """The connection carrying the request went down with no alternative."""

    def __init__(self, detail: str = "Diameter peer went down") -> None:
        super().__init__(detail)

    @property
    def cause(self) -> str:
        return "diameter-peer-down"


_EXACT: Final[dict[tuple[int, int], type[DiameterFailure]]] = {
    (cls.vendor_id, cls.result_code): cls
    for cls in (
        UnableToDeliver,
        TooBusy,
        LoopDetected,
        CommitFailure,
        RefreshFailure,
        InsufficientResources,
        QosProfileFailure,
        AccessProfileFailure,
        PriorityNotGranted,
        ModificationFailure,
        InvalidServiceInformation,
        FilterRestrictions,
        AuthorizationRejected,
    )
}


def failure_for(result: Result, detail: str = "") -> DiameterFailure:
    """The exception for a non-success ``result``.

    ETSI and 3GPP codes are also recognised when a peer sends them as a plain
    Result-Code instead of an Experimental-Result.
    """
    cls = _EXACT.get((result.vendor_id, result.code))
    if cls is None and result.vendor_id == 0:
        for vendor in (VENDOR_ETSI, VENDOR_3GPP):
            cls = _EXACT.get((vendor, result.code))
            if cls is not None:
                break
    if cls is None:
        # RFC 6733 7.1: 4xxx may succeed later; other 3xxx and 5xxx will not.
        transient = 4000 <= result.code < 5000
        cls = TransientFailure if transient else PermanentFailure
    return cls(detail, result)


def check(result: Result | None, detail: str = "") -> Result:
    """Return ``result`` when it is a success.

    :raises DiameterFailure: the matching subclass otherwise; an answer
        without any result counts as a permanent failure.
    """
    if result is None:
        raise PermanentFailure("answer without Result-Code", Result(0, 0))
    if result.is_success:
        return result
    raise failure_for(result, detail)
