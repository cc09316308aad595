"""The embedded data plane: a userspace UDP relay behind :class:`BindingTable`.

Theory of operation.  Each leg of a binding (RTP, and RTCP unless the
transport uses a single port) owns two UDP sockets, one on the access
address (where the box punches) and one on the core address (where the
server sends).  Each socket is registered with the reactor as a small read
descriptor; when it is readable, ``doRead`` drains it with non-blocking
``recv_into`` (core side) or ``recvfrom_into`` (access side) calls into one
buffer shared by the table, and sends each datagram on with ``sendto``, up
to a batch cap so that one busy leg cannot starve the others.  Twisted's
``DatagramProtocol`` is not used: its per-datagram work (a new ``bytes``
and address tuple, a ``datagramReceived`` call, and in ``write`` four
parses of the destination address text) made a relay on it spend about
twice (loopback, ``benchmarks/relay_pps.py``) to three times (lab notes,
"Userspace relays under load") the CPU per datagram of a bare
``recvfrom``/``sendto`` loop; this relay spends about as much as the bare
loop.

What each socket does with a datagram is in :mod:`hostednat.nat.relay`.
Nothing is logged per datagram; counts accumulate per binding and are added
to the table's totals when a binding is removed.

A subclass that forwards latched legs elsewhere (:mod:`hostednat.nat.kernel`)
uses three hooks: ``leg_latched`` (after every latch), ``hold`` and
``mark_alive``.

Not supported: policing to the authorised bandwidth (rule 7), filtering
punch payloads before they reach the server (rule 9: all accepted datagrams
are forwarded), IPv6 jumbograms (datagrams longer than 65,535 bytes are
truncated), and ICMP errors from the server or the box (Linux does not
report them to an unconnected UDP socket).
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Iterator
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.nat.binding import (
    Binding,
    BindingCounters,
    BindingFailed,
    BindingObserver,
    BindingRequest,
    Endpoint,
    Leg,
    NoPortsAvailable,
    PortPair,
)
from hostednat.nat.latch import LatchGuard
from hostednat.nat.ports import PortPool
from hostednat.nat.relay import AccessReader, CoreReader, LegState, Reader

__all__ = ["EVENT_OBSERVER_FAILED", "UserspaceBindingTable"]

#: ``hostednat_event`` of the log event emitted when the observer raises.
EVENT_OBSERVER_FAILED = events.BINDING_OBSERVER_FAILED

# The largest length a UDP header can carry (RFC 768); anything longer (IPv6
# jumbograms) is truncated.
_DATAGRAM_BUFFER = 65535

# Ports tried per side before giving up: enough to step over the few ports
# of a range that other software may hold; a range mostly in use elsewhere
# is a configuration error, reported as exhaustion.
_BIND_ATTEMPTS = 8

# Datagrams read per doRead call: large enough that the reactor's own work
# per wake-up (epoll_wait, timers, logging context) is spread over many
# datagrams, small enough (~1 ms of work) that other legs are served soon.
# Relay CPU per datagram under flood (benchmarks/relay_pps.py, loopback):
# batch 1 about 9 us, 8 about 4.5, 32 about 3.7-4.3, 256 about 3.2-3.6,
# 1024 about 3.2-3.4; a bare recvfrom/sendto loop 3.3-3.9.
_READ_BATCH = 256


class RelayReactor(Protocol):
    """What the table needs from a reactor: descriptors and the time.

    Any Twisted reactor providing ``IReactorFDSet`` and ``IReactorTime``.
    """

    def addReader(self, reader: IReadDescriptor) -> None:
        """Start calling ``reader.doRead`` when its descriptor is readable."""

    def removeReader(self, reader: IReadDescriptor) -> None:
        """Stop watching ``reader``."""

    def seconds(self) -> float:
        """The current time."""


@attrs.define(eq=False)
class _BindingState:
    binding: Binding
    counters: BindingCounters
    legs: dict[Leg, LegState]
    readers: list[Reader]


class UserspaceBindingTable:
    """A :class:`~hostednat.nat.binding.BindingTable` relaying in userspace.

    :param reactor: provides ``IReactorFDSet`` and ``IReactorTime``.
    :param access_address: local IP the box punches to.
    :param core_address: local IP the server sends to.
    :param access_pool: ports on ``access_address``.
    :param core_pool: ports on ``core_address``.
    :param latch_window: seconds a leg may latch after :meth:`allocate` or
        :meth:`relatch` (reference 7.2 rule 2).
    :param relatch_after: seconds of silence after which another port of the
        box's IP takes a leg over (reference 7.2 rule 3b).
    :param receive_buffer: ``SO_RCVBUF`` and ``SO_SNDBUF`` of every socket,
        in bytes; the kernel doubles it and caps it at ``net.core.rmem_max``
        and ``wmem_max``.  The 4 MiB default roughly doubled the loss-free
        rate of relays under bursty load (lab notes).
    :param observer: told when a leg latches; also settable later as the
        ``observer`` attribute.
    :param read_batch: datagrams read from one socket per wake-up.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: RelayReactor,
        *,
        access_address: str,
        core_address: str,
        access_pool: PortPool,
        core_pool: PortPool,
        latch_window: float,
        relatch_after: float,
        receive_buffer: int = 4 << 20,
        observer: BindingObserver | None = None,
        read_batch: int = _READ_BATCH,
    ) -> None:
        self.reactor = reactor
        self.observer = observer
        self._access_address = access_address
        self._core_address = core_address
        self._access_pool = access_pool
        self._core_pool = core_pool
        self._latch_window = latch_window
        self._relatch_after = relatch_after
        self._receive_buffer = receive_buffer
        self._read_batch = read_batch
        self._buffer = bytearray(_DATAGRAM_BUFFER)
        self._ids = itertools.count(1)
        self._bindings: dict[Binding, _BindingState] = {}
        self._retired = BindingCounters()

    def __len__(self) -> int:
        """How many bindings are allocated."""
        return len(self._bindings)

    def __contains__(self, binding: object) -> bool:
        """Whether ``binding`` is allocated here and not yet removed."""
        return binding in self._bindings

    def __iter__(self) -> Iterator[Binding]:
        """The bindings allocated now (a snapshot: removing is safe)."""
        return iter(list(self._bindings))

    def allocate(self, request: BindingRequest) -> Binding:
        """Bind the access and core sockets and open the latch window.

        :raises NoPortsAvailable: a pool is exhausted, or
            :data:`_BIND_ATTEMPTS` ports in a row were in use elsewhere.
        :raises BindingFailed: binding a socket failed for another reason
            (for example an address that is not local).
        :raises ValueError: ``request.box_address`` is not an IP address.
        """
        single = request.box_ports.single
        now = self.reactor.seconds()
        guards = {}
        for leg in request.box_ports.legs():
            guards[leg] = LatchGuard(
                request.box_address, self._latch_window, self._relatch_after
            )
            guards[leg].open_window(now)

        access_port, access_sockets = self._bind_side(
            self._access_pool, self._access_address, single
        )
        try:
            core_port, core_sockets = self._bind_side(
                self._core_pool, self._core_address, single
            )
        except BaseException:
            _close_all(access_sockets)
            self._access_pool.release(access_port)
            raise

        binding = Binding(
            binding_id=str(next(self._ids)),
            request=request,
            access_address=self._access_address,
            core_address=self._core_address,
            access=_pair(access_port, single),
            core=_pair(core_port, single),
        )
        state = _BindingState(binding, BindingCounters(), {}, [])
        for index, (leg, guard) in enumerate(guards.items()):
            self._start_leg(
                state, leg, guard, access_sockets[index], core_sockets[index]
            )
        self._bindings[binding] = state
        return binding

    def install(
        self, binding: Binding, server_rtp: Endpoint, server_rtcp: Endpoint | None
    ) -> Deferred[None]:
        """Send the box's datagrams for each leg to the server's endpoint.

        ``server_rtcp`` is ignored for a single-port binding.
        """
        state = self._bindings.get(binding)
        if state is None:
            return fail(_unknown(binding))

        servers = {Leg.RTP: server_rtp, Leg.RTCP: server_rtcp}
        for leg, leg_state in state.legs.items():
            server = servers[leg]
            if server is not None:
                binding.server[leg] = server
                leg_state.aim()
        return succeed(None)

    def latch(self, binding: Binding, leg: Leg, source: Endpoint) -> Deferred[None]:
        """Send ``leg``'s media to ``source`` from now on.

        The observer is not told: the caller already knows.  The result is
        :meth:`leg_latched`'s.
        """
        state = self._bindings.get(binding)
        if state is None or leg not in state.legs:
            return fail(_unknown(binding, leg))

        leg_state = state.legs[leg]
        leg_state.guard.latch(source, self.reactor.seconds())
        self._record_latch(leg_state, source)
        return self.leg_latched(binding, leg, source)

    def leg_latched(
        self, binding: Binding, leg: Leg, source: Endpoint
    ) -> Deferred[None]:
        """Hook, after every latch: ``leg`` of ``binding`` now sends to ``source``.

        :meth:`latch` returns the result; a guard's latch has nobody to give
        it to and drops a failure, so an override reports its own.
        """
        return succeed(None)

    def mark_alive(self, binding: Binding, leg: Leg, now: float) -> None:
        """Tell ``leg``'s guard that its latched endpoint was heard at ``now``,
        on a path this table does not read (the kernel's), so that rule 3b
        does not relatch a leg whose box still talks.  See
        :meth:`LatchGuard.refresh <hostednat.nat.latch.LatchGuard.refresh>`.
        """
        state = self._bindings.get(binding)
        if state is not None and leg in state.legs:
            state.legs[leg].guard.refresh(now)

    def hold(self, binding: Binding, leg: Leg, held: bool) -> None:
        """Stop (``held``) or resume relaying ``leg`` in Python, both ways.

        For a leg handed to another forwarder (the kernel).  Its datagrams
        are still read and judged by its guard; core-side ones count as
        dropped.
        """
        state = self._bindings.get(binding)
        if state is not None and leg in state.legs:
            state.legs[leg].held = held
            state.legs[leg].aim()

    def relatch(self, binding: Binding) -> None:
        """Open a new latch window on every leg of ``binding``.

        :raises BindingFailed: ``binding`` is not in this table.
        """
        state = self._bindings.get(binding)
        if state is None:
            raise _unknown(binding)
        now = self.reactor.seconds()
        for leg_state in state.legs.values():
            leg_state.guard.open_window(now)

    def remove(self, binding: Binding) -> Deferred[None]:
        """Stop relaying, close the sockets and release the ports.

        Removing a binding that is not (or no longer) in the table does
        nothing.
        """
        state = self._bindings.pop(binding, None)
        if state is None:
            return succeed(None)

        for reader in state.readers:
            self.reactor.removeReader(reader)
            reader.close()
        self._access_pool.release(binding.access.rtp)
        self._core_pool.release(binding.core.rtp)
        self._retired.add(state.counters)
        return succeed(None)

    def counters(self, binding: Binding) -> BindingCounters:
        """A copy of the current counts of ``binding``.

        :raises BindingFailed: ``binding`` is not in this table.
        """
        state = self._bindings.get(binding)
        if state is None:
            raise _unknown(binding)
        return attrs.evolve(state.counters)

    def totals(self) -> BindingCounters:
        """Counts over every binding allocated since the table was created."""
        total = attrs.evolve(self._retired)
        for state in self._bindings.values():
            total.add(state.counters)
        return total

    def close(self) -> Deferred[None]:
        """Remove every binding."""
        for binding in list(self._bindings):
            self.remove(binding)
        return succeed(None)

    def _start_leg(
        self,
        state: _BindingState,
        leg: Leg,
        guard: LatchGuard,
        access: socket.socket,
        core: socket.socket,
    ) -> None:
        leg_state = LegState(state.binding, leg, guard, state.counters)
        state.legs[leg] = leg_state
        batch = self._read_batch
        readers = [
            AccessReader(
                access,
                core,
                leg_state,
                self._buffer,
                batch,
                self.reactor.seconds,
                self._latched,
            ),
            CoreReader(core, access, leg_state, self._buffer, batch),
        ]
        for reader in readers:
            state.readers.append(reader)
            self.reactor.addReader(reader)

    def _latched(self, leg_state: LegState, source: Endpoint) -> None:
        """Called by an access reader when its guard (re)latched."""
        self._record_latch(leg_state, source)
        following = self.leg_latched(leg_state.binding, leg_state.leg, source)
        # Nobody waits for a guard's latch; leg_latched reported any failure.
        following.addErrback(_dropped)
        observer = self.observer
        if observer is None:
            return
        try:
            observer.binding_latched(leg_state.binding, leg_state.leg, source)
        except Exception:
            # A reactor boundary: the relay must survive the observer.
            self._log.failure(
                "Binding observer failed on {binding_id} {leg}",
                hostednat_event=EVENT_OBSERVER_FAILED,
                binding_id=leg_state.binding.binding_id,
                leg=leg_state.leg.value,
            )

    def _record_latch(self, leg_state: LegState, source: Endpoint) -> None:
        leg_state.binding.latched[leg_state.leg] = source
        leg_state.aim()

    def _bind_side(
        self, pool: PortPool, address: str, single: bool
    ) -> tuple[int, list[socket.socket]]:
        """Allocate a slot from ``pool`` and bind its socket(s) on ``address``.

        Slots found in use elsewhere stay out of the pool until this returns,
        so that the retries draw other ports.
        """
        in_use: list[int] = []
        try:
            for _ in range(_BIND_ATTEMPTS):
                port = pool.allocate_single() if single else pool.allocate_pair()
                ports = (port,) if single else (port, port + 1)
                try:
                    return port, self._bind_ports(address, ports)
                except OSError as error:
                    if error.errno != errno.EADDRINUSE:
                        pool.release(port)
                        raise BindingFailed(
                            f"cannot bind {address} port {port}: {error}"
                        ) from error
                    in_use.append(port)
            raise NoPortsAvailable(
                f"{_BIND_ATTEMPTS} ports in a row in use on {address}"
            )
        finally:
            for port in in_use:
                pool.release(port)

    def _bind_ports(self, address: str, ports: tuple[int, ...]) -> list[socket.socket]:
        sockets: list[socket.socket] = []
        try:
            for port in ports:
                sockets.append(_open_socket(address, port, self._receive_buffer))
        except BaseException:
            _close_all(sockets)
            raise
        return sockets


def _open_socket(address: str, port: int, buffer_size: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``address``:``port``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_size)
        sock.setblocking(False)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _dropped(_failure: Failure) -> None:
    return None


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _pair(port: int, single: bool) -> PortPair:
    return PortPair(port) if single else PortPair(port, port + 1)


def _unknown(binding: Binding, leg: Leg | None = None) -> BindingFailed:
    what = binding.binding_id if leg is None else f"{binding.binding_id} {leg.value}"
    return BindingFailed(f"binding {what} is not in this table")
