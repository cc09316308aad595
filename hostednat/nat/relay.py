"""The userspace relay's read descriptors: what each socket of a leg does.

:class:`~hostednat.nat.userspace.UserspaceBindingTable` gives each leg a
:class:`LegState` and two readers, registered with the reactor; each
``doRead`` drains its socket into the table's shared buffer, up to a batch.

Core side.  A datagram from any source is media for the leg: the core
network is the operator's, servers sometimes send from a port other than
the ``server_port`` they announced, and skipping the source check keeps the
hot path to one ``recv_into`` and one ``sendto``.  Before the leg latches
the datagram is dropped and counted (``dropped_before_latch``; reference
7.2 rule 7); after, it leaves from the *access socket of the same leg*, the
port the box punched to, towards the latched endpoint (rule 5), so that an
address- and port-dependent filter in the home gateway lets it in.

Access side.  Every datagram goes through the leg's
:class:`~hostednat.nat.latch.LatchGuard`, with the reactor's time.  A
datagram that latches (or relatches) is handed to the table, which records
``binding.latched[leg]`` and tells the observer.  Datagrams from the latched
endpoint (RTCP receiver reports, further punches) leave from the core
socket of the same leg towards the server's endpoint for that leg once the
table's ``install`` gave it, and are dropped before that.  Refused
datagrams are counted: from another IP, or from another port of the box's
IP while the latched endpoint is live, as ``dropped_foreign_source`` (rule
6); from the box's IP with nothing latched and no window open, as
``dropped_before_latch``.

A held leg (``LegState.held``, a leg handed to the kernel) has no
destination either way: its core-side datagrams are dropped and counted, its
access-side ones are still judged by the guard and otherwise dropped.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from hostednat.nat.binding import Binding, BindingCounters, Endpoint, Leg
from hostednat.nat.latch import LatchDecision, LatchGuard

__all__ = ["AccessReader", "CoreReader", "LegState", "Reader"]


@attrs.define(eq=False)
class LegState:
    """The mutable state of one leg, shared by its two readers."""

    binding: Binding
    leg: Leg
    guard: LatchGuard
    counters: BindingCounters
    to_box: tuple[str, int] | None = None
    to_server: tuple[str, int] | None = None
    held: bool = False

    def aim(self) -> None:
        """Point the relay at the leg's latched and server endpoints, or
        nowhere while it is held."""
        latched = None if self.held else self.binding.latched.get(self.leg)
        server = None if self.held else self.binding.server.get(self.leg)
        self.to_box = None if latched is None else (latched.host, latched.port)
        self.to_server = None if server is None else (server.host, server.port)


@implementer(IReadDescriptor)
class Reader:
    """One socket of a leg, registered with the reactor."""

    def __init__(
        self,
        sock: socket.socket,
        peer: socket.socket,
        state: LegState,
        buffer: bytearray,
        batch: int,
    ) -> None:
        self.sock = sock
        self.state = state
        self._fileno = sock.fileno()
        self._buffer = buffer
        self._view = memoryview(buffer)
        self._batch = range(batch)
        self._send = peer.sendto

    def fileno(self) -> int:
        """The socket's descriptor, or -1 once closed."""
        return self._fileno

    def logPrefix(self) -> str:
        """Prefix for log events emitted while this reader runs."""
        return "hostednat-relay"

    def connectionLost(self, reason: Failure) -> None:
        """Close the socket; the reactor has stopped watching it."""
        self.close()

    def close(self) -> None:
        """Close the socket; safe to call more than once."""
        self._fileno = -1
        self.sock.close()

    def doRead(self) -> None:
        """Handle the datagrams waiting on the socket."""
        raise NotImplementedError


class CoreReader(Reader):
    """Media from the server: relayed to the latched endpoint, or dropped."""

    def doRead(self) -> None:
        """Relay up to a batch of datagrams from the core socket."""
        recv_into = self.sock.recv_into
        buffer = self._buffer
        view = self._view
        send = self._send
        destination = self.state.to_box
        packets = octets = dropped = 0

        if destination is None:
            for _ in self._batch:
                try:
                    recv_into(buffer)
                except BlockingIOError:
                    break
                dropped += 1
        else:
            for _ in self._batch:
                try:
                    size = recv_into(buffer)
                except BlockingIOError:
                    break
                try:
                    send(view[:size], destination)
                except OSError:
                    # A full send buffer or an unreachable box: the datagram
                    # is lost, as it would be on the wire.
                    continue
                packets += 1
                octets += size

        counters = self.state.counters
        counters.packets_to_box += packets
        counters.bytes_to_box += octets
        counters.dropped_before_latch += dropped


class AccessReader(Reader):
    """Datagrams from the box's side: latching, then RTCP to the server."""

    def __init__(
        self,
        sock: socket.socket,
        peer: socket.socket,
        state: LegState,
        buffer: bytearray,
        batch: int,
        clock: Callable[[], float],
        latched: Callable[[LegState, Endpoint], None],
    ) -> None:
        super().__init__(sock, peer, state, buffer, batch)
        self._clock = clock
        self._latched = latched

    def doRead(self) -> None:
        """Judge and forward up to a batch of datagrams."""
        state = self.state
        guard = state.guard
        counters = state.counters
        now = self._clock()

        for _ in self._batch:
            try:
                size, address = self.sock.recvfrom_into(self._buffer)
            except BlockingIOError:
                break
            source = Endpoint(address[0], address[1])
            decision = guard.offer(source, now)

            if decision is LatchDecision.DROPPED_FOREIGN:
                counters.dropped_foreign_source += 1
                continue
            if decision is LatchDecision.DROPPED_WINDOW:
                if guard.latched is None:
                    counters.dropped_before_latch += 1
                else:
                    counters.dropped_foreign_source += 1
                continue
            if decision.latches:
                counters.latch_datagrams += 1
                self._latched(state, source)
                if self._fileno == -1:
                    # The observer removed the binding.
                    return

            self._forward(size)

    def _forward(self, size: int) -> None:
        destination = self.state.to_server
        if destination is None:
            return
        try:
            self._send(self._view[:size], destination)
        except OSError:
            return
        counters = self.state.counters
        counters.packets_to_server += 1
        counters.bytes_to_server += size
