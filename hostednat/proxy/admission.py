"""The admission seam: asking a policy function before media is set up.

Before a SETUP is forwarded, the proxy describes the stream to an
:class:`AdmissionHook` and waits for its verdict.  The embedded default
(:class:`AdmitAll`) admits everything; the Gq' client towards a RACS SPDF
(ETSI TS 183 017) implements the same protocol, turns the description into an
AAR and a refusal into an :class:`AdmissionRefused` carrying the RTSP status
the box gets (453, 503 with Retry-After, 504, 403).

A hook may also end a session on its own (an SPDF's RAR or ASR): it calls the
``terminate`` callable it was given with :meth:`AdmissionHook.attach`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed

from hostednat.nat.binding import Binding, Endpoint, PortPair

if TYPE_CHECKING:
    from hostednat.rtsp.sdp import MediaDescription


@attrs.frozen
class StreamDescription:
    """One stream a box wants to SETUP, as the proxy knows it then.

    :param session_key: the proxy's own key for the RTSP session (stable
        before the server has assigned a Session id).
    :param box_address: source IP of the box's RTSP connection.
    :param box_ports: the box's ``client_port``; ``None`` for TCP-interleaved
        transports.
    :param lower_transport: ``"UDP"`` or ``"TCP"``.
    :param control_url: the Request-URI of the SETUP.
    :param media: the SDP media section this SETUP names, from the cached
        DESCRIBE answer, when the proxy saw one.
    :param media_index: 1-based ordinal of that ``m=`` line.
    :param binding: the hosted-NAT binding allocated for it, if any.
    """

    session_key: str
    box_address: str
    box_ports: PortPair | None
    lower_transport: str
    control_url: str
    media: MediaDescription | None = None
    media_index: int = 0
    binding: Binding | None = None


@attrs.frozen
class Admission:
    """A positive verdict.

    :param access: where the box must punch, when the policy function (an
        SPDF's Binding-Output-List) chose it rather than the local binding.
    """

    access: Endpoint | None = None


class AdmissionRefused(Exception):
    """A refusal, carrying the RTSP answer the box gets."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str] | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(status, reason, cause)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})
        self.cause = cause


Terminate = Callable[[str, str], None]
"""``terminate(session_key, cause)``: end an RTSP session from the policy side."""


class AdmissionHook(Protocol):
    """Policy consulted around the life of each RTSP session."""

    def attach(self, terminate: Terminate) -> None:
        """Give the hook the way to end sessions on its own."""

    def admit(self, stream: StreamDescription) -> Deferred[Admission]:
        """Decide on ``stream``; fail with :class:`AdmissionRefused` to refuse."""

    def stream_established(
        self, stream: StreamDescription, server: Endpoint | None
    ) -> Deferred[None]:
        """The server accepted the SETUP; ``server`` is its RTP source."""

    def session_ended(self, session_key: str, cause: str) -> Deferred[None]:
        """The RTSP session is over (TEARDOWN, timeout, connection loss)."""


class AdmitAll:
    """The embedded default: every stream is admitted, nothing is signalled."""

    def attach(self, terminate: Terminate) -> None:
        pass

    def admit(self, stream: StreamDescription) -> Deferred[Admission]:
        return succeed(Admission())

    def stream_established(
        self, stream: StreamDescription, server: Endpoint | None
    ) -> Deferred[None]:
        return succeed(None)

    def session_ended(self, session_key: str, cause: str) -> Deferred[None]:
        return succeed(None)
