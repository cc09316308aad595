"""The RTSP proxy on Twisted: one upstream connection per box connection.

Theory of operation.  Bytes from the box feed a sans-IO parser; each request
is processed in arrival order (routing, URL rewrite, and for SETUP the
binding and admission steps, which may wait) and written upstream at once, so
pipelined requests stay pipelined (reference 6.6, decision D16: CSeq is never
renumbered).  Every box request owns an *answer slot*; answers are written to
the box strictly in request order, whether they come from the server or from
the proxy itself (403, 453, 502, 504...).  Requests the server sends to the
box (ANNOUNCE, SET_PARAMETER, GET_PARAMETER, PLAY_NOTIFY, TEARDOWN) and the
box's answers to them are relayed directly, as are ``$`` interleaved frames
(RFC 2326 10.12) in both directions.  A ``Via`` field is added to every
message relayed (RFC 2326 12.43, RFC 7826 18.57).

Not supported: several upstream servers on one box connection (answered 400),
``Proxy-Require`` option tags (551), RTSP over HTTP tunnelling, RTSPS.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.config import NatConfig, RtspConfig
from hostednat.nat.binding import BindingTable
from hostednat.proxy.admission import AdmissionHook
from hostednat.proxy.routing import Router, RouteRefused, Target, UrlMap
from hostednat.proxy.session import RtspSession, SessionTable
from hostednat.proxy.setup import SetupStep
from hostednat.rtsp.errors import REASONS, RtspError
from hostednat.rtsp.headers import format_via, parse_session, rewrite_rtp_info_urls
from hostednat.rtsp.message import (
    Headers,
    InterleavedFrame,
    Request,
    Response,
    make_response,
)
from hostednat.rtsp.parser import RtspParser
from hostednat.rtsp.sdp import (
    MediaDescription,
    SessionDescription,
    match_media,
    parse_sdp,
    rewrite_controls,
)

AnswerHook = Callable[[Response], None]

_URL_HEADERS = ("Content-Base", "Content-Location", "Location")

_PROXY_CSEQ = 2**31 - 1
"""CSeq of the TEARDOWN the proxy sends on its own before hanging up; the
highest value RTSP 2.0 allows (RFC 7826 18.20), far from the box's own."""


@attrs.define(eq=False)
class Slot:
    """The answer a box request is owed, and what to do when it comes."""

    request: Request
    answer: Response | None = None
    on_answer: AnswerHook | None = None
    timer: IDelayedCall | None = None


class ProxyFactory(Factory):
    """Builds a :class:`BoxConnection` per accepted box connection."""

    noisy = False

    def __init__(
        self,
        reactor: Any,
        rtsp: RtspConfig,
        nat: NatConfig,
        router: Router,
        bindings: BindingTable,
        sessions: SessionTable,
        admission: AdmissionHook,
    ) -> None:
        self.reactor = reactor
        self.rtsp = rtsp
        self.nat = nat
        self.router = router
        self.bindings = bindings
        self.sessions = sessions
        self.admission = admission
        self.connections: set[BoxConnection] = set()
        self._serial = itertools.count(1)

    def buildProtocol(self, addr: Any) -> BoxConnection:
        return BoxConnection(self, next(self._serial))

    def connect_upstream(
        self, target: Target, box: BoxConnection
    ) -> Deferred[UpstreamConnection]:
        """Open the TCP connection to ``target``.

        An address literal is connected to directly; a name goes through
        :class:`HostnameEndpoint`, which resolves it off the reactor thread.
        """
        timeout = self.rtsp.connect_timeout
        endpoint: IStreamClientEndpoint
        try:
            version = ipaddress.ip_address(target.host).version
        except ValueError:
            endpoint = HostnameEndpoint(
                self.reactor, target.host, target.port, timeout=timeout
            )
        else:
            literal = TCP4ClientEndpoint if version == 4 else TCP6ClientEndpoint
            endpoint = literal(self.reactor, target.host, target.port, timeout=timeout)
        connecting: Deferred[Any] = endpoint.connect(_UpstreamFactory(box))
        return connecting


class BoxConnection(Protocol):
    """A box's RTSP connection and its one upstream connection."""

    log = Logger()

    def __init__(self, factory: ProxyFactory, serial: int) -> None:
        self.proxy = factory
        self.serial = serial
        self.clock: IReactorTime = factory.reactor
        config = factory.rtsp
        self._via = config.via
        self._parser = RtspParser(config.max_header_bytes, config.max_body_bytes)
        self._queue: deque[Request] = deque()
        self._slots: deque[Slot] = deque()
        self._outstanding: deque[Slot] = deque()
        self._busy = False
        self._closing = False
        self._paused = False
        self._target: Target | None = None
        self._urls: UrlMap = UrlMap()
        self.upstream: UpstreamConnection | None = None
        self._sessions: dict[str | None, RtspSession] = {}
        # Sessions the box asked to TEARDOWN whole, answered or not: a
        # client may hang up without waiting (ffmpeg does), and the session
        # still ended by its own request, not by a broken link.
        self._tearing_down: set[RtspSession] = set()
        self._sdp: dict[str, tuple[str, SessionDescription]] = {}
        self.box_address = ""

    # -- connection lifecycle -------------------------------------------------

    def connectionMade(self) -> None:
        self.box_address = self.transport.getPeer().host  # type: ignore[union-attr]
        _no_delay(self.transport)
        self.proxy.connections.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.proxy.connections.discard(self)
        self._closing = True
        self._queue.clear()
        for slot in self._slots:
            _cancel(slot.timer)
        self._end_sessions("box connection closed")
        if self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]

    def upstream_lost(self) -> None:
        """The server closed; answer what it owed with 502 and hang up."""
        self.upstream = None
        self._end_sessions("upstream connection closed")
        self._fail_outstanding(502)
        self._close_after_flush()

    def session_aborted(self, session: RtspSession, cause: str) -> None:
        """End ``session`` towards the server, then hang up both sides.

        Decision D13: an RTSP 1.0 box learns of it from the closed
        connection; the server gets a TEARDOWN first so that it stops
        sending at once rather than at its session timeout.
        """
        for key, known in list(self._sessions.items()):
            if known is session:
                del self._sessions[key]
        url = self._aggregate_url(session)
        if self.upstream is not None and session.session_id and url:
            teardown = Request("TEARDOWN", url, "RTSP/1.0", Headers())
            teardown.headers.add("CSeq", str(_PROXY_CSEQ))
            teardown.headers.add("Session", session.session_id)
            teardown.headers.add("Via", format_via("RTSP/1.0", self._via))
            self.upstream.transport.write(teardown.serialize())  # type: ignore[union-attr]
        self._close_after_flush()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]

    # -- bytes from the box ---------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            messages = self._parser.feed(data)
        except RtspError as error:
            self._malformed(error)
            return
        for message in messages:
            if isinstance(message, Request):
                self._queue.append(message)
            elif isinstance(message, Response):
                self._relay_to_server(message)
            elif self.upstream is not None:
                self.upstream.transport.write(message.serialize())  # type: ignore[union-attr]
        self._pump()

    def _malformed(self, error: RtspError) -> None:
        self.log.warn(
            "malformed RTSP from {peer}: {error}",
            hostednat_event=events.MALFORMED,
            peer=self.box_address,
            status=error.status,
            error=str(error),
        )
        self._queue.clear()
        answer = Response(
            "RTSP/1.0", error.status, REASONS.get(error.status, ""), Headers()
        )
        answer.headers.add("Connection", "close")
        answer.headers.add("Content-Length", "0")
        self._slots.append(Slot(_NO_REQUEST, answer))
        self._close_after_flush()

    def _pump(self) -> None:
        """Process queued requests in order; a step that waits holds the rest."""
        while self._queue and not self._busy and not self._closing:
            request = self._queue.popleft()
            slot = Slot(request)
            self._slots.append(slot)
            waiting = self._process(request, slot)
            if waiting is not None and (not waiting.called or waiting.paused):
                self._busy = True
                waiting.addErrback(self._step_failed, slot)
                waiting.addBoth(self._resume)
        backlog = len(self._slots) + len(self._queue)
        if backlog >= self.proxy.rtsp.max_pipelined and not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _resume(self, _: object) -> None:
        self._busy = False
        self._pump()

    def _step_failed(self, failure: Failure, slot: Slot) -> None:
        """A step that waited failed unexpectedly: answer 500, keep going."""
        self.log.failure("request processing failed", failure)
        if slot.answer is None:
            _cancel(slot.timer)
            self.answer_locally(slot, 500)

    # -- requests -------------------------------------------------------------

    def _process(self, request: Request, slot: Slot) -> Deferred[None] | None:
        if "Proxy-Require" in request.headers:
            tags = ", ".join(request.headers.get_all("Proxy-Require"))
            self.answer_locally(slot, 551, [("Unsupported", tags)])
            return None
        try:
            target = self.proxy.router.resolve(request.uri)
        except RouteRefused as refused:
            self.log.info(
                "refused {method} {uri}: {status}",
                hostednat_event=events.FORBIDDEN,
                method=request.method,
                uri=request.uri,
                status=refused.status,
            )
            self.answer_locally(slot, refused.status)
            return None
        if self._target is None:
            self._target, self._urls = target, target.urls
            return self._connect(request, slot)
        if target.authority != self._target.authority:
            self.answer_locally(slot, 400)
            return None
        return self._dispatch(request, slot, target.urls)

    def _connect(self, request: Request, slot: Slot) -> Deferred[None]:
        assert self._target is not None
        connecting = self.proxy.connect_upstream(self._target, self)

        def connected(upstream: UpstreamConnection) -> Deferred[None] | None:
            if self._closing:
                upstream.transport.loseConnection()  # type: ignore[union-attr]
                return None
            self.upstream = upstream
            return self._dispatch(request, slot, self._urls)

        def unreachable(failure: Failure) -> None:
            self.log.warn(
                "upstream {upstream} unreachable: {error}",
                hostednat_event=events.UPSTREAM_UNREACHABLE,
                upstream=f"{self._target.host}:{self._target.port}",  # type: ignore[union-attr]
                error=failure.getErrorMessage(),
            )
            self._fail_outstanding(502)
            self._close_after_flush()

        done: Deferred[None] = connecting.addCallbacks(connected, unreachable)
        return done

    def _dispatch(
        self, request: Request, slot: Slot, urls: UrlMap
    ) -> Deferred[None] | None:
        """Rewrite ``request`` for the server and send it, or answer it."""
        if not urls.identity and request.uri != "*":
            request.uri = urls.to_upstream(request.uri)
        session = self._session_of(request)
        method = request.method
        if method == "SETUP":
            return SetupStep(self, request, slot, session).start()
        if method == "TEARDOWN" and session is not None:
            if request.uri not in session.streams or len(session.streams) < 2:
                self._tearing_down.add(session)
            slot.on_answer = lambda answer: self._torn_down(session, request.uri)
        elif method == "DESCRIBE":
            slot.on_answer = lambda answer: self._described(request.uri, answer)
        self.send(request, slot)
        return None

    def forwarding(self, slot: Slot) -> bool:
        """Whether a request that waited may still go upstream for ``slot``."""
        return not self._closing and self.upstream is not None and slot.answer is None

    def send(self, request: Request, slot: Slot) -> None:
        """Forward ``request`` upstream; its answer will fill ``slot``."""
        if slot.answer is not None:
            return
        if self.upstream is None:
            self.answer_locally(slot, 502)
            return
        request.headers.add("Via", format_via(request.version, self._via))
        self.upstream.transport.write(request.serialize())  # type: ignore[union-attr]
        slot.timer = self.clock.callLater(
            self.proxy.rtsp.response_timeout, self._timed_out, slot
        )
        self._outstanding.append(slot)

    def _session_of(self, request: Request) -> RtspSession | None:
        value = request.headers.get("Session")
        if value is None:
            session = self._sessions.get(None)
        else:
            session_id, _ = parse_session(value)
            session = self._sessions.get(session_id)
        if session is not None and session.ended:
            self._forget(session)
            return None
        if session is not None:
            self.proxy.sessions.touch(session)
        return session

    def _forget(self, session: RtspSession) -> None:
        for key, known in list(self._sessions.items()):
            if known is session:
                del self._sessions[key]

    def _aggregate_url(self, session: RtspSession) -> str | None:
        """The URL to TEARDOWN ``session`` with: its DESCRIBE URL if known."""
        streams = list(session.streams)
        for url in self._sdp:
            if any(stream.startswith(url) for stream in streams):
                return url
        return streams[0] if streams else next(iter(self._sdp), None)

    def open_session(self, request: Request) -> RtspSession:
        """Start a session for a SETUP that named none the proxy knows."""
        session = self.proxy.sessions.open(self.box_address, self)
        key = _id(request) if "Session" in request.headers else None
        self._sessions[key] = session
        return session

    def media_for(self, url: str) -> MediaDescription | None:
        """The SDP media section the control URL ``url`` names, if known."""
        for base, sdp in self._sdp.values():
            media = match_media(sdp, base, url)
            if media is not None:
                return media
        return None

    def identify(self, session: RtspSession, value: str) -> RtspSession:
        """Key ``session`` by the server's id; join it to a known one."""
        session_id, timeout = parse_session(value)
        if self._sessions.get(None) is session:
            del self._sessions[None]
        known = self._sessions.get(session_id)
        if known is not None and known is not session:
            self.proxy.sessions.merge(known, session)
            session = known
        self._sessions[session_id] = session
        self.proxy.sessions.identify(session, session_id, timeout)
        return session

    def _torn_down(self, session: RtspSession, url: str) -> None:
        sessions = self.proxy.sessions
        if url in session.streams and len(session.streams) > 1:
            sessions.drop_stream(session, url, "teardown")
            return
        for key, known in list(self._sessions.items()):
            if known is session:
                del self._sessions[key]
        self._tearing_down.discard(session)
        sessions.end(session, "teardown")

    def _described(self, url: str, answer: Response) -> None:
        if not 200 <= answer.status < 300 or not answer.body:
            return
        base = (
            answer.headers.get("Content-Base")
            or answer.headers.get("Content-Location")
            or url
        )
        self._sdp[url] = (base, parse_sdp(answer.body))

    # -- answers and requests from the server -----------------------------------

    def upstream_message(self, message: Request | Response | InterleavedFrame) -> None:
        """Called by the upstream connection for each parsed message."""
        if isinstance(message, Response):
            self._server_answered(message)
        elif isinstance(message, Request):
            if message.method == "TEARDOWN":
                self._server_tore_down(message)
            if not self._urls.identity and message.uri != "*":
                message.uri = self._urls.to_box(message.uri)
            message.headers.add("Via", format_via(message.version, self._via))
            self.transport.write(message.serialize())  # type: ignore[union-attr]
        else:
            self.transport.write(message.serialize())  # type: ignore[union-attr]

    def _server_tore_down(self, request: Request) -> None:
        """RTSP 2.0 lets the server end a session (RFC 7826 13.7)."""
        value = request.headers.get("Session")
        session = self._sessions.get(parse_session(value)[0]) if value else None
        if session is not None:
            self._torn_down(session, "")

    def upstream_malformed(self, error: RtspError) -> None:
        self.log.warn(
            "malformed RTSP from upstream: {error}",
            hostednat_event=events.MALFORMED,
            peer=self.server_address(),
            status=error.status,
            error=str(error),
        )
        self._fail_outstanding(502)
        self._close_after_flush()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]

    def _server_answered(self, answer: Response) -> None:
        slot = self._match(answer)
        if slot is None:
            return
        _cancel(slot.timer)
        if not self._urls.identity:
            self._rewrite_urls(answer)
        if slot.on_answer is not None:
            slot.on_answer(answer)
        answer.headers.add("Via", format_via(answer.version, self._via))
        slot.answer = answer
        self._flush()

    def _match(self, answer: Response) -> Slot | None:
        """The outstanding request this answer is for (RFC 2326 12.17)."""
        if not self._outstanding:
            return None
        head = self._outstanding[0]
        cseq = answer.cseq
        if cseq is None or head.request.cseq == cseq:
            return self._outstanding.popleft()
        for slot in self._outstanding:
            if slot.request.cseq == cseq:
                self._outstanding.remove(slot)
                return slot
        return None

    def _rewrite_urls(self, answer: Response) -> None:
        to_box = self._urls.to_box
        for name in _URL_HEADERS:
            value = answer.headers.get(name)
            if value is not None:
                answer.headers.set(name, to_box(value))
        rtp_info = answer.headers.get("RTP-Info")
        if rtp_info is not None:
            answer.headers.set("RTP-Info", rewrite_rtp_info_urls(rtp_info, to_box))
        if answer.body and b"a=control:rtsp" in answer.body.lower():
            answer.set_body(rewrite_controls(answer.body, to_box))

    def _relay_to_server(self, answer: Response) -> None:
        if self.upstream is None:
            return
        answer.headers.add("Via", format_via(answer.version, self._via))
        self.upstream.transport.write(answer.serialize())  # type: ignore[union-attr]

    # -- answers to the box, in order --------------------------------------------

    def answer_locally(
        self, slot: Slot, status: int, headers: list[tuple[str, str]] | None = None
    ) -> None:
        slot.answer = make_response(slot.request, status, headers=headers or ())
        self._flush()

    def _flush(self) -> None:
        slots = self._slots
        write = self.transport.write  # type: ignore[union-attr]
        while slots and slots[0].answer is not None:
            write(slots.popleft().answer.serialize())  # type: ignore[union-attr]
        backlog = len(slots) + len(self._queue)
        if self._paused and backlog < self.proxy.rtsp.max_pipelined:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]
        if self._closing and not slots:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _timed_out(self, slot: Slot) -> None:
        slot.timer = None
        self.log.warn(
            "upstream {upstream} did not answer {method} in time",
            hostednat_event=events.UPSTREAM_TIMEOUT,
            upstream=self.server_address(),
            method=slot.request.method,
        )
        self._fail_outstanding(504)
        self._close_after_flush()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]

    def _fail_outstanding(self, status: int) -> None:
        self._queue.clear()
        for slot in self._slots:
            _cancel(slot.timer)
            slot.timer = None
            if slot.answer is None:
                slot.answer = make_response(slot.request, status)
        self._outstanding.clear()
        self._flush()

    def _close_after_flush(self) -> None:
        self._closing = True
        self._queue.clear()
        self._flush()

    def _end_sessions(self, cause: str) -> None:
        for session in set(self._sessions.values()):
            ended = "teardown" if session in self._tearing_down else cause
            self.proxy.sessions.end(session, ended)
        self._sessions.clear()
        self._tearing_down.clear()

    def server_address(self) -> str:
        if self.upstream is None or self.upstream.transport is None:
            return self._target.host if self._target is not None else ""
        return str(self.upstream.transport.getPeer().host)  # type: ignore[attr-defined]


class UpstreamConnection(Protocol):
    """The proxy's connection to the RTSP server for one box connection."""

    def __init__(self, box: BoxConnection) -> None:
        config = box.proxy.rtsp
        self.box = box
        self._parser = RtspParser(config.max_header_bytes, config.max_body_bytes)
        self._failed = False

    def connectionMade(self) -> None:
        _no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            messages = self._parser.feed(data)
        except RtspError as error:
            self._failed = True
            self.box.upstream_malformed(error)
            return
        for message in messages:
            self.box.upstream_message(message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.box.upstream is self:
            self.box.upstream_lost()


class _UpstreamFactory(Factory):
    """Builds the one upstream connection of a box connection."""

    noisy = False

    def __init__(self, box: BoxConnection) -> None:
        self.box = box

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        return UpstreamConnection(self.box)


_NO_REQUEST = Request("", "", "RTSP/1.0", Headers())


def _id(request: Request) -> str:
    return parse_session(request.headers.get("Session") or "")[0]


def _no_delay(transport: object) -> None:
    """Send each RTSP message at once: they are small and a peer waits on it."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


def _cancel(timer: IDelayedCall | None) -> None:
    if timer is not None and timer.active():
        timer.cancel()
