"""The AF procedure: RTSP sessions as Gq' (or Rx) sessions towards RACS.

:class:`GqAdmission` implements the proxy's
:class:`~hostednat.proxy.admission.AdmissionHook` (reference 3, steps 4-12
and 8):

- one Diameter session per RTSP session (decision D4), created by the first
  UDP SETUP; TCP-interleaved streams are admitted without an AAR (D8);
- before a UDP SETUP is forwarded, an AAR with one Media-Component-
  Description for that stream (Media-Component-Number = the SDP ``m=``
  ordinal, Media-Type, bandwidth from ``b=AS`` or ``b=TIAS`` plus IP/UDP/RTP
  overhead, RR/RS from ``b=RR``/``b=RS``, sub-components for RTP and RTCP),
  Binding-Information with the pair {box public address and requested port,
  wildcard core side} (4.7, D2, D3), Latching-Indication LATCH,
  Globally-Unique-Address, Specific-Action subscriptions and
  AF-Charging-Identifier; Service-Class, Reservation-Priority and
  Authorization-Package-Id when configured;
- a Binding-Output-List in the AAA gives the box's access address; without
  one, hostednat's own binding is used;
- once the server's ports are known, an update AAR carries the core-side
  Flow-Descriptions (4.11, D5) and no Binding-Information;
- STR on every end of the RTSP session; RAR (release, detachment,
  reservation expiry, or with Abort-Cause) and ASR are answered 2001 and end
  the RTSP session through the proxy's ``terminate`` callable, then STR.

Refusals become :class:`~hostednat.proxy.admission.AdmissionRefused` with
the RTSP status of :mod:`hostednat.diameter.results`; failures of the RACS
itself (no peer, overload, timeout) admit the stream when ``fail_open`` is
set.  Every refusal is logged with its code (``racs.refused``).

Not supported: RELATCH (the proxy has no re-latch trigger yet), Flow-Status
REMOVED for a stream switched to TCP, IPv6 Framed-IPv6-Prefix shorter than
/128, and sending the SDP as Codec-Data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

import attrs
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.logger import Logger

from hostednat.diameter import log as keys
from hostednat.diameter import messages
from hostednat.diameter.codec import Header
from hostednat.diameter.config import RacsConfig
from hostednat.diameter.dictionary import (
    APPLICATION_GQ,
    Command,
    FlowStatus,
    FlowUsage,
    LatchingIndication,
    MediaType,
    SpecificAction,
    TerminationCause,
)
from hostednat.diameter.messages import (
    AaRequest,
    Identity,
    MediaComponent,
    MediaSubComponent,
    SessionIdFactory,
    TransportAddress,
)
from hostednat.diameter.peer import PeerTimers
from hostednat.diameter.results import (
    DIAMETER_SUCCESS,
    DIAMETER_UNKNOWN_SESSION_ID,
    DiameterFailure,
    check,
)
from hostednat.diameter.transport import Answer, DiameterClient
from hostednat.nat.binding import Endpoint
from hostednat.proxy.admission import (
    Admission,
    AdmissionRefused,
    StreamDescription,
    Terminate,
)

IP_UDP_RTP_OVERHEAD: Final = 20 + 8 + 12
"""Bytes per packet: IPv4 (RFC 791), UDP (RFC 768), RTP (RFC 3550 5.1)."""

DIAMETER_COMMAND_UNSUPPORTED: Final = 3001

_MEDIA_TYPES: Final = {
    "audio": MediaType.AUDIO,
    "video": MediaType.VIDEO,
    "data": MediaType.DATA,
    "application": MediaType.APPLICATION,
    "control": MediaType.CONTROL,
    "text": MediaType.TEXT,
    "message": MediaType.MESSAGE,
}

_RELEASING_ACTIONS: Final = frozenset(
    {
        SpecificAction.INDICATION_OF_RELEASE_OF_BEARER,
        SpecificAction.INDICATION_OF_SUBSCRIBER_DETACHMENT,
        SpecificAction.INDICATION_OF_RESERVATION_EXPIRATION,
    }
)


class MediaLike(Protocol):
    """What is read of ``hostednat.rtsp.sdp.MediaDescription``."""

    @property
    def index(self) -> int: ...

    @property
    def media(self) -> str: ...

    @property
    def bandwidth(self) -> Mapping[str, int]: ...


class DiameterLink(Protocol):
    """What the AF needs of :class:`~hostednat.diameter.transport.GroupDriver`."""

    on_request: Any

    def request(self, data: bytes, timeout: float | None = None) -> Deferred[Answer]:
        """Send a request; fires with its answer."""

    def answer(self, peer: str, data: bytes) -> None:
        """Answer a request from ``peer``."""

    def stop(self) -> None:
        """Disconnect from the peers (DPR)."""


def termination_cause(cause: str) -> TerminationCause:
    """Termination-Cause (RFC 6733 8.15) for the proxy's end-of-session text."""
    text = cause.lower()
    if "teardown" in text:
        return TerminationCause.LOGOUT
    if "timeout" in text:
        return TerminationCause.SESSION_TIMEOUT
    if "closed" in text or "lost" in text:
        return TerminationCause.LINK_BROKEN
    return TerminationCause.ADMINISTRATIVE


def media_component(stream: StreamDescription, config: RacsConfig) -> MediaComponent:
    """The Media-Component-Description of an initial AAR for ``stream``."""
    media: MediaLike | None = stream.media
    number = stream.media_index or (media.index if media is not None else 1)
    subs = [MediaSubComponent(1)]
    if stream.box_ports is not None and stream.box_ports.rtcp is not None:
        subs.append(MediaSubComponent(2, FlowUsage.RTCP))
    if media is None:
        return MediaComponent(
            number,
            tuple(subs),
            flow_status=FlowStatus.ENABLED,
            bandwidth_ul=config.min_uplink_bandwidth or None,
        )
    bandwidth = media.bandwidth
    factor = 1 + IP_UDP_RTP_OVERHEAD / config.rtp_payload_bytes
    downlink: int | None = None
    if "TIAS" in bandwidth:
        downlink = round(bandwidth["TIAS"] * factor)
    elif "AS" in bandwidth:
        downlink = round(bandwidth["AS"] * 1000 * factor)
    rr = bandwidth.get("RR")
    uplink = max(config.min_uplink_bandwidth, rr or 0)
    return MediaComponent(
        number=number,
        sub_components=tuple(subs),
        media_type=_MEDIA_TYPES.get(media.media.lower(), MediaType.OTHER),
        bandwidth_ul=min(uplink, 0xFFFFFFFF) or None,
        bandwidth_dl=None if downlink is None else min(downlink, 0xFFFFFFFF),
        flow_status=FlowStatus.ENABLED,
        rr_bandwidth=rr,
        rs_bandwidth=bandwidth.get("RS"),
    )


def flow_descriptions(server: Endpoint, core: Endpoint) -> tuple[str, str]:
    """Downlink and uplink IPFilterRules between server and BGF core (4.11)."""
    return (
        f"permit out 17 from {server.host} {server.port} to {core.host} {core.port}",
        f"permit in 17 from {core.host} {core.port} to {server.host} {server.port}",
    )


@attrs.define(eq=False)
class _Stream:
    number: int
    rtcp: bool
    core: Endpoint | None = None


@attrs.define(eq=False)
class _Session:
    key: str
    session_id: str
    lock: DeferredLock = attrs.field(factory=DeferredLock)
    established: bool = False
    ended: bool = False
    streams: dict[int, _Stream] = attrs.field(factory=dict)


class GqAdmission:
    """The proxy's admission hook, speaking Gq' (or Rx) to RACS."""

    log = Logger()

    def __init__(
        self,
        config: RacsConfig,
        link: DiameterLink,
        identity: Identity,
        session_ids: SessionIdFactory,
    ) -> None:
        self.config = config
        self.link = link
        self.identity = identity
        self.session_ids = session_ids
        self._terminate: Terminate | None = None
        self._sessions: dict[str, _Session] = {}
        self._by_session_id: dict[str, _Session] = {}
        self._busy = 0
        self._idle_waiters: list[Deferred[None]] = []
        link.on_request = self.request_received

    # -- AdmissionHook ----------------------------------------------------------

    def attach(self, terminate: Terminate) -> None:
        """Keep the proxy's way to end sessions for RAR and ASR."""
        self._terminate = terminate

    def admit(self, stream: StreamDescription) -> Deferred[Admission]:
        """AAR for a UDP stream; interleaved streams pass without one."""
        if stream.lower_transport.upper() != "UDP" or stream.box_ports is None:
            return succeed(Admission())
        return self._track(Deferred.fromCoroutine(self._admit(stream)))

    def stream_established(
        self, stream: StreamDescription, server: Endpoint | None
    ) -> Deferred[None]:
        """Update AAR with the core-side Flow-Descriptions (decision D5)."""
        session = self._sessions.get(stream.session_key)
        if session is None or server is None or not session.established:
            return succeed(None)
        return self._track(
            Deferred.fromCoroutine(self._update(session, stream, server))
        )

    def session_ended(self, session_key: str, cause: str) -> Deferred[None]:
        """STR for the Diameter session of ``session_key``, if there is one."""
        session = self._sessions.get(session_key)
        if session is None or session.ended:
            return succeed(None)
        return self._track(
            Deferred.fromCoroutine(self._end(session, termination_cause(cause)))
        )

    # -- lifecycle ----------------------------------------------------------------

    def in_flight(self) -> Deferred[None]:
        """Fires once every AAR and STR sent so far has completed."""
        if not self._busy:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def stop(self) -> Deferred[None]:
        """Let every AAR and STR complete, then DPR the peers.

        Call it after the proxy ended its sessions, so their STRs go first
        (RFC 6733 5.4: graceful shutdown).
        """

        async def stop() -> None:
            await self.in_flight()
            self.link.stop()

        return Deferred.fromCoroutine(stop())

    # -- AAR ------------------------------------------------------------------------

    def _session(self, key: str) -> _Session:
        session = self._sessions.get(key)
        if session is None:
            session = _Session(key, self.session_ids.next())
            self._sessions[key] = session
            self._by_session_id[session.session_id] = session
        return session

    def _forget(self, session: _Session) -> None:
        self._sessions.pop(session.key, None)
        self._by_session_id.pop(session.session_id, None)

    def initial_request(
        self,
        session_id: str,
        stream: StreamDescription,
        component: MediaComponent | None = None,
    ) -> bytes:
        """The encoded AAR for ``stream`` (public for tests and benchmarks).

        :param component: its Media-Component-Description, when the caller
            already has it from :func:`media_component`.
        """
        config = self.config
        assert stream.box_ports is not None
        if component is None:
            component = media_component(stream, config)
        access = TransportAddress(stream.box_address, stream.box_ports.rtp)
        gq = config.application_id == APPLICATION_GQ
        request = AaRequest(
            session_id=session_id,
            components=(component,),
            subscriber=stream.box_address,
            address_realm=(
                config.address_realm.encode() if config.address_realm else None
            ),
            binding_input=(
                (access, TransportAddress.wildcard(stream.box_address)) if gq else ()
            ),
            latching=LatchingIndication.LATCH if gq else None,
            specific_actions=config.actions,
            af_charging_identifier=stream.session_key.encode(),
            service_class=config.service_class,
            reservation_priority=config.reservation_priority,
            authorization_package_ids=(
                (config.authorization_package_id,)
                if config.authorization_package_id
                else ()
            ),
        )
        return messages.aa_request(
            request, self.identity, config.destination_realm, config.destination_host
        )

    async def _admit(self, stream: StreamDescription) -> Admission:
        session = self._session(stream.session_key)
        await session.lock.acquire()
        try:
            component = media_component(stream, self.config)
            data = self.initial_request(session.session_id, stream, component)
            try:
                _, answer = await self.link.request(data, self.config.request_timeout)
                check(messages.result_of(answer.avps))
            except DiameterFailure as failure:
                return self._refused(session, stream, failure)
            session.established = True
            access, core = _output_pair(answer.avps)
            number = component.number
            has_rtcp = (
                stream.box_ports is not None and stream.box_ports.rtcp is not None
            )
            session.streams[number] = _Stream(number, has_rtcp, core)
            self.log.info(
                "RACS admitted {session} stream {number}",
                session=stream.session_key,
                diameter_session=session.session_id,
                number=number,
                access=str(access) if access else None,
                hostednat_event=keys.ADMISSION_GRANTED,
            )
            return Admission(access=access)
        finally:
            session.lock.release()

    def _refused(
        self, session: _Session, stream: StreamDescription, failure: DiameterFailure
    ) -> Admission:
        if not session.established:
            self._forget(session)
        if failure.infrastructure and self.config.fail_open:
            self.log.warn(
                "RACS unavailable for {session} ({cause}); admitted (fail-open)",
                session=stream.session_key,
                cause=failure.cause,
                hostednat_event=keys.ADMISSION_FAIL_OPEN,
            )
            return Admission()
        self.log.warn(
            "RACS refused {session}: {result_code} -> RTSP {status} ({cause})",
            session=stream.session_key,
            result_code=failure.result.code,
            vendor_id=failure.result.vendor_id,
            status=failure.rtsp_status,
            cause=failure.cause,
            hostednat_event=keys.ADMISSION_REFUSED,
        )
        headers = {}
        if failure.rtsp_status == 503:
            headers["Retry-After"] = str(self.config.retry_after)
        raise AdmissionRefused(
            failure.rtsp_status, failure.rtsp_reason, headers, failure.cause
        )

    async def _update(
        self, session: _Session, stream: StreamDescription, server: Endpoint
    ) -> None:
        number = media_component(stream, self.config).number
        known = session.streams.get(number)
        core = known.core if known is not None else None
        binding = stream.binding
        if core is None and binding is not None:
            core = Endpoint(binding.core_address, binding.core.rtp)
        if known is None or core is None:
            return
        subs = [MediaSubComponent(1, None, flow_descriptions(server, core))]
        if known.rtcp:
            subs.append(
                MediaSubComponent(
                    2,
                    FlowUsage.RTCP,
                    flow_descriptions(
                        Endpoint(server.host, server.port + 1),
                        Endpoint(core.host, core.port + 1),
                    ),
                )
            )
        request = AaRequest(
            session.session_id,
            (MediaComponent(number, tuple(subs), flow_status=FlowStatus.ENABLED),),
        )
        data = messages.aa_request(
            request,
            self.identity,
            self.config.destination_realm,
            self.config.destination_host,
        )
        refused: DiameterFailure | None = None
        await session.lock.acquire()
        try:
            if session.ended:
                return
            _, answer = await self.link.request(data, self.config.request_timeout)
            check(messages.result_of(answer.avps))
        except DiameterFailure as failure:
            refused = failure
        finally:
            session.lock.release()
        if refused is None:
            return
        self.log.warn(
            "RACS update for {session} failed: {cause}",
            session=session.key,
            cause=refused.cause,
            result_code=refused.result.code,
            hostednat_event=keys.UPDATE_REFUSED,
        )
        if not refused.infrastructure and not self.config.fail_open:
            self._abort(session, f"racs update refused ({refused.cause})")

    # -- STR ------------------------------------------------------------------------

    async def _end(self, session: _Session, cause: TerminationCause) -> None:
        session.ended = True
        await session.lock.acquire()
        try:
            self._forget(session)
            if not session.established:
                return
            data = messages.session_termination_request(
                self.identity,
                session.session_id,
                cause,
                self.config.destination_realm,
                self.config.destination_host,
            )
            try:
                _, answer = await self.link.request(data, self.config.request_timeout)
                check(messages.result_of(answer.avps))
            except DiameterFailure as failure:
                self.log.warn(
                    "STR for {session} failed: {cause}",
                    session=session.key,
                    cause=failure.cause,
                    hostednat_event=keys.TERMINATION_FAILED,
                )
        finally:
            session.lock.release()

    # -- RAR and ASR ------------------------------------------------------------------

    def request_received(self, peer: str, header: Header, message: Any) -> None:
        """Answer a request from the SPDF; end the session when it asks."""
        code = header.command_code
        session_id = messages.session_id_of(message.avps)
        if code not in (Command.RE_AUTH, Command.ABORT_SESSION):
            self.link.answer(
                peer,
                messages.answer(
                    header, self.identity, DIAMETER_COMMAND_UNSUPPORTED, session_id
                ),
            )
            return
        session = self._by_session_id.get(session_id or "")
        if session is None:
            self.link.answer(
                peer,
                messages.answer(
                    header, self.identity, DIAMETER_UNKNOWN_SESSION_ID, session_id
                ),
            )
            return
        self.link.answer(
            peer, messages.answer(header, self.identity, DIAMETER_SUCCESS, session_id)
        )
        if code == Command.ABORT_SESSION:
            reason = f"racs abort (cause {messages.abort_cause(message.avps)})"
        else:
            actions = set(messages.specific_actions(message.avps))
            abort = messages.abort_cause(message.avps)
            if abort is None and not actions & _RELEASING_ACTIONS:
                return
            reason = f"racs re-auth (actions {sorted(actions)}, abort {abort})"
        self.log.info(
            "RACS ended {session}: {reason}",
            session=session.key,
            command=int(code),
            reason=reason,
            hostednat_event=keys.SESSION_ABORTED,
        )
        self._abort(session, reason)

    def _abort(self, session: _Session, reason: str) -> None:
        if self._terminate is not None:
            self._terminate(session.key, reason)
        if not session.ended:
            self._track(
                Deferred.fromCoroutine(
                    self._end(session, TerminationCause.ADMINISTRATIVE)
                )
            )

    def _track(self, deferred: Deferred[Any]) -> Deferred[Any]:
        self._busy += 1

        def done(result: object) -> object:
            self._busy -= 1
            if not self._busy:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        deferred.addBoth(done)
        return deferred


def _output_pair(avps: Any) -> tuple[Endpoint | None, Endpoint | None]:
    """Access and core elements of the first Binding-Output-List pair."""
    try:
        _, output = messages.binding_lists(avps)
    except ValueError:
        return None, None
    if len(output) < 2:
        return None, None
    access, core = output[0], output[1]
    return (
        None if access.is_wildcard else Endpoint(access.host, access.port),
        None if core.is_wildcard else Endpoint(core.host, core.port),
    )


def make_admission(config: RacsConfig, reactor: Any) -> GqAdmission:
    """Build the Gq' client and its peers on ``reactor`` and start connecting.

    :param reactor: provides ``IReactorTCP`` and ``IReactorTime``.
    """
    now = reactor.seconds()
    identity = Identity(
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
        application_id=config.application_id,
        product_name=config.product_name,
        vendor_id=config.vendor_id,
        origin_state_id=int(now) & 0xFFFFFFFF,
    )
    timers = PeerTimers(
        watchdog=config.watchdog_interval,
        reconnect_min=config.reconnect_min,
        reconnect_max=config.reconnect_max,
    )
    client = DiameterClient(
        identity,
        {peer.name: peer for peer in config.peers},
        reactor,
        timers=timers,
        request_timeout=config.request_timeout,
    )
    admission = GqAdmission(
        config, client, identity, SessionIdFactory(config.origin_host, now)
    )
    client.start()
    return admission
