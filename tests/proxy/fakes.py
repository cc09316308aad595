"""Test doubles for the proxy's collaborators (unit tests only).

The real binding tables are tested against real sockets and the kernel in
``tests/nat`` and ``tests/lab``; these record what the proxy asked for.
"""

from __future__ import annotations

import itertools

from twisted.internet.defer import Deferred, fail, succeed

from hostednat.nat.binding import (
    Binding,
    BindingCounters,
    BindingRequest,
    Endpoint,
    Leg,
    NoPortsAvailable,
    PortPair,
)
from hostednat.proxy.admission import (
    Admission,
    AdmissionRefused,
    StreamDescription,
    Terminate,
)


class RecordingBindingTable:
    """Hands out sequential port pairs and remembers every call."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.failure: Exception | None = None
        self.live: dict[str, Binding] = {}
        self.installed: dict[str, tuple[Endpoint, Endpoint | None]] = {}
        self.removed: list[str] = []
        self._serial = itertools.count(0)

    def allocate(self, request: BindingRequest) -> Binding:
        if self.failure is not None:
            raise self.failure
        if len(self.live) >= self.capacity:
            raise NoPortsAvailable("no ports")
        n = next(self._serial)
        single = request.box_ports.single
        access = PortPair(30000 + 2 * n, None if single else 30001 + 2 * n)
        core = PortPair(40000 + 2 * n, None if single else 40001 + 2 * n)
        binding = Binding(f"b{n}", request, "198.51.100.1", "203.0.113.1", access, core)
        self.live[binding.binding_id] = binding
        return binding

    def install(
        self, binding: Binding, server_rtp: Endpoint, server_rtcp: Endpoint | None
    ) -> Deferred[None]:
        self.installed[binding.binding_id] = (server_rtp, server_rtcp)
        return succeed(None)

    def latch(self, binding: Binding, leg: Leg, source: Endpoint) -> Deferred[None]:
        binding.latched[leg] = source
        return succeed(None)

    def relatch(self, binding: Binding) -> None:
        pass

    def remove(self, binding: Binding) -> Deferred[None]:
        if self.live.pop(binding.binding_id, None) is not None:
            self.removed.append(binding.binding_id)
        return succeed(None)

    def counters(self, binding: Binding) -> BindingCounters:
        return BindingCounters()

    def totals(self) -> BindingCounters:
        return BindingCounters()

    def close(self) -> Deferred[None]:
        for binding in list(self.live.values()):
            self.remove(binding)
        return succeed(None)


class ScriptedAdmission:
    """Admits, or refuses with a preset error; records what it was told."""

    def __init__(
        self, refusal: AdmissionRefused | None = None, hold: bool = False
    ) -> None:
        self.refusal = refusal
        self.hold = hold
        self.pending: list[Deferred[Admission]] = []
        self.asked: list[StreamDescription] = []
        self.established: list[tuple[StreamDescription, Endpoint | None]] = []
        self.ended: list[tuple[str, str]] = []
        self.terminate: Terminate | None = None

    def attach(self, terminate: Terminate) -> None:
        self.terminate = terminate

    def admit(self, stream: StreamDescription) -> Deferred[Admission]:
        self.asked.append(stream)
        if self.hold:
            self.pending.append(Deferred())
            return self.pending[-1]
        if self.refusal is not None:
            return fail(self.refusal)
        return succeed(Admission())

    def stream_established(
        self, stream: StreamDescription, server: Endpoint | None
    ) -> Deferred[None]:
        self.established.append((stream, server))
        return succeed(None)

    def session_ended(self, session_key: str, cause: str) -> Deferred[None]:
        self.ended.append((session_key, cause))
        return succeed(None)
