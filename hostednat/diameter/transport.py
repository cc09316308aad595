"""Twisted around the sans-IO peers: TCP connections, one timer, Deferreds.

:class:`GroupDriver` runs a :class:`~hostednat.diameter.peer.PeerGroup` on
a reactor: it writes what the machines want sent, performs the connects and
disconnects they ask for, arms a single ``callLater`` at their next
deadline, and turns each request into a Deferred that fires with the
``(header, message)`` of its answer or fails with a
:class:`~hostednat.diameter.results.DiameterFailure`.

:class:`DiameterClient` is the AF side: it connects to the configured SPDF
peers itself (``reactor.connectTCP``) instead of using ``ClientService``,
because reconnection backoff lives in the sans-IO machine where a test clock
can drive it.  :class:`DiameterServerFactory` is the SPDF side used by the
simulator: one responder machine per accepted connection.

Not supported: SCTP and TLS transports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat.diameter import log as keys
from hostednat.diameter.codec import Header
from hostednat.diameter.config import PeerAddress
from hostednat.diameter.group import PeerGroup
from hostednat.diameter.messages import Identity
from hostednat.diameter.peer import (
    ConnectRequested,
    DisconnectRequested,
    GroupEvent,
    PeerMachine,
    PeerOpened,
    PeerSuspected,
    PeerTimers,
    PeerWentDown,
    ProtocolViolation,
    RequestAnswered,
    RequestFailed,
    RequestReceived,
    Role,
)
from hostednat.diameter.results import DiameterFailure

Answer = tuple[Header, Any]
"""The header and the decoded python-diameter message of an answer."""

RequestHandler = Callable[[str, Header, Any], None]
"""``handler(peer, header, message)`` for requests a peer sent us."""

StateListener = Callable[[GroupEvent], None]


class DelayedCall(TypingProtocol):
    """The part of ``DelayedCall`` the driver uses."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(TypingProtocol):
    """The part of ``Clock`` the driver uses."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...


class TcpConnector(TypingProtocol):
    """The part of ``IReactorTCP`` the client uses."""

    def connectTCP(
        self, host: str, port: int, factory: Any, timeout: float = 30
    ) -> Any: ...


def _host_of(address: IAddress) -> list[str]:
    host = getattr(address, "host", None)
    return [host] if isinstance(host, str) else []


def _transport(protocol: Protocol) -> Any:
    # ITransport, typed loosely: mypy reads zope interfaces without self.
    return protocol.transport


class PeerProtocol(Protocol):
    """One TCP connection of one peer; feeds its bytes to the driver."""

    def __init__(self, driver: GroupDriver, name: str) -> None:
        self.driver = driver
        self.name = name

    def connectionMade(self) -> None:
        # Requests and answers are small and each one is waited for: Nagle's
        # algorithm would hold one back until the previous is acknowledged.
        transport = _transport(self)
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        self.driver.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        self.driver.data_received(self, data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.driver.connection_lost(self, reason)


class GroupDriver:
    """Runs a peer group's machines on a reactor."""

    log = Logger()

    def __init__(self, group: PeerGroup, reactor: Clock) -> None:
        self.group = group
        self.reactor = reactor
        self.on_request: RequestHandler | None = None
        self.listeners: list[StateListener] = []
        self._protocols: dict[str, PeerProtocol] = {}
        self._waiting: dict[int, Deferred[Answer]] = {}
        self._timer: DelayedCall | None = None
        self._timer_at: float | None = None
        self._pumping = False

    # -- application side -----------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether a request would be sent now."""
        return self.group.available

    def request(self, data: bytes, timeout: float | None = None) -> Deferred[Answer]:
        """Send an encoded request; the Deferred fires with its answer.

        Fails at once with ``NoPeerAvailable`` when no peer is open.
        """
        now = self.reactor.seconds()
        try:
            key = self.group.send_request(data, now, timeout)
        except DiameterFailure as error:
            self._pump()
            return fail(error)
        waiting: Deferred[Answer] = Deferred()
        self._waiting[key] = waiting
        self._pump()
        return waiting

    def abort(self) -> None:
        """Drop every connection at once, as a crashed peer would."""
        for protocol in list(self._protocols.values()):
            if protocol.transport is not None:
                _transport(protocol).abortConnection()

    def answer(self, peer: str, data: bytes) -> None:
        """Send an answer to a request ``peer`` sent."""
        self.group.send_answer(peer, data)
        self._pump()

    # -- transport side ---------------------------------------------------------

    def connection_made(self, protocol: PeerProtocol) -> None:
        """A connection of ``protocol.name`` is up."""
        self._protocols[protocol.name] = protocol
        local = _host_of(_transport(protocol).getHost())
        self.group.connection_made(protocol.name, self.reactor.seconds(), local)
        self._pump()

    def data_received(self, protocol: PeerProtocol, data: bytes) -> None:
        """Bytes arrived on a connection."""
        if self._protocols.get(protocol.name) is not protocol:
            return
        self.group.receive_data(protocol.name, data, self.reactor.seconds())
        self._pump()

    def connection_lost(self, protocol: PeerProtocol, reason: Failure | None) -> None:
        """A connection closed; stale connections are ignored."""
        if self._protocols.get(protocol.name) is not protocol:
            return
        del self._protocols[protocol.name]
        message = reason.getErrorMessage() if reason else "connection lost"
        self.group.connection_lost(protocol.name, self.reactor.seconds(), message)
        self._pump()

    def connection_failed(self, name: str, reason: Failure) -> None:
        """A connection attempt to ``name`` failed."""
        now = self.reactor.seconds()
        self.group.connection_failed(name, now, reason.getErrorMessage())
        self._pump()

    # -- pumping ----------------------------------------------------------------

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                for name, data in self.group.data_to_send():
                    protocol = self._protocols.get(name)
                    if protocol is not None and protocol.transport is not None:
                        _transport(protocol).write(data)
                event = self.group.next_event()
                if event is None:
                    break
                self._dispatch(event)
        finally:
            self._pumping = False
        self._arm()

    def _arm(self) -> None:
        deadline = self.group.get_timer()
        if deadline is None:
            return
        if self._timer is not None and self._timer.active():
            if self._timer_at is not None and self._timer_at <= deadline:
                return
            self._timer.cancel()
        delay = max(0.0, deadline - self.reactor.seconds())
        self._timer_at = deadline
        self._timer = self.reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.group.handle_timer(self.reactor.seconds())
        self._pump()

    def _dispatch(self, event: GroupEvent) -> None:
        if isinstance(event, RequestAnswered):
            waiting = self._waiting.pop(event.key, None)
            if waiting is not None:
                waiting.callback((event.header, event.message))
        elif isinstance(event, RequestFailed):
            waiting = self._waiting.pop(event.key, None)
            if waiting is not None:
                waiting.errback(event.failure)
        elif isinstance(event, RequestReceived):
            self._deliver(event)
        elif isinstance(event, ConnectRequested):
            self.connect(event.peer)
        elif isinstance(event, DisconnectRequested):
            protocol = self._protocols.get(event.peer)
            if protocol is not None and protocol.transport is not None:
                _transport(protocol).loseConnection()
        else:
            self._report(event)
        if not isinstance(event, RequestAnswered | RequestFailed | RequestReceived):
            for listener in list(self.listeners):
                listener(event)

    def _deliver(self, event: RequestReceived) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(event.peer, event.header, event.message)
        except Exception:
            self.log.failure(
                "handling a request from {peer} failed",
                peer=event.peer,
                hostednat_event=keys.REQUEST_HANDLER_FAILED,
            )

    def _report(self, event: GroupEvent) -> None:
        if isinstance(event, PeerOpened):
            self.log.info(
                "Diameter peer {peer} open",
                peer=event.peer,
                hostednat_event=keys.PEER_OPEN,
            )
        elif isinstance(event, PeerSuspected):
            self.log.warn(
                "Diameter peer {peer} suspect: no watchdog answer",
                peer=event.peer,
                hostednat_event=keys.PEER_SUSPECT,
            )
        elif isinstance(event, PeerWentDown) and event.orderly:
            self.log.info(
                "Diameter peer {peer} closed: {reason}",
                peer=event.peer,
                reason=event.reason,
                hostednat_event=keys.PEER_DOWN,
            )
        elif isinstance(event, PeerWentDown):
            self.log.error(
                "Diameter peer {peer} down: {reason}",
                peer=event.peer,
                reason=event.reason,
                hostednat_event=keys.PEER_DOWN,
            )
        elif isinstance(event, ProtocolViolation):
            self.log.warn(
                "Diameter peer {peer} sent something unusable: {reason}",
                peer=event.peer,
                reason=event.reason,
                hostednat_event=keys.PEER_MALFORMED,
            )

    def connect(self, name: str) -> None:
        """Open a connection to ``name``; the client overrides it."""


class _ConnectFactory(ClientFactory):
    def __init__(self, driver: GroupDriver, name: str) -> None:
        self.driver = driver
        self.name = name

    def buildProtocol(self, addr: IAddress | None) -> PeerProtocol:
        return PeerProtocol(self.driver, self.name)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.driver.connection_failed(self.name, reason)


class DiameterClient(GroupDriver):
    """The AF's connections to its SPDF peers, in priority order.

    :param reactor: provides ``IReactorTCP`` and ``Clock``.
    :param peers: peer name to address, highest priority first.
    """

    def __init__(
        self,
        identity: Identity,
        peers: Mapping[str, PeerAddress],
        reactor: Any,
        timers: PeerTimers | None = None,
        request_timeout: float = 3.0,
        rng: random.Random | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        rng = rng or random.Random()
        machines = [
            PeerMachine(name, identity, Role.INITIATOR, timers, rng) for name in peers
        ]
        super().__init__(PeerGroup(machines, request_timeout, rng), reactor)
        self.tcp: TcpConnector = reactor
        self.addresses = dict(peers)
        self.connect_timeout = connect_timeout

    def start(self) -> None:
        """Connect to every peer."""
        self.group.start(self.reactor.seconds())
        self._pump()

    def stop(self) -> None:
        """DPR every open peer and stop reconnecting."""
        self.group.close(self.reactor.seconds())
        self._pump()

    def connect(self, name: str) -> None:
        address = self.addresses[name]
        self.tcp.connectTCP(
            address.host,
            address.port,
            _ConnectFactory(self, name),
            timeout=self.connect_timeout,
        )


class DiameterServerFactory(Factory):
    """Accepts AF connections; one responder machine for each.

    ``on_connection(driver)`` is called for each new connection so the
    owner can set ``driver.on_request`` and keep the driver to send RAR or
    ASR on it.
    """

    def __init__(
        self,
        identity: Identity,
        reactor: Clock,
        on_connection: Callable[[GroupDriver], None],
        timers: PeerTimers | None = None,
        request_timeout: float = 3.0,
    ) -> None:
        self.identity = identity
        self.reactor = reactor
        self.on_connection = on_connection
        self.timers = timers
        self.request_timeout = request_timeout
        self._count = 0

    def buildProtocol(self, addr: IAddress | None) -> PeerProtocol:
        self._count += 1
        name = f"af-{self._count}"
        machine = PeerMachine(name, self.identity, Role.RESPONDER, self.timers)
        driver = GroupDriver(PeerGroup([machine], self.request_timeout), self.reactor)
        self.on_connection(driver)
        return PeerProtocol(driver, name)
