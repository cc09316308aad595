"""Several SPDF peers in priority order, with pending requests and failover.

:class:`PeerGroup` sends each request to the first OKAY peer, keeps it
pending under its End-to-End identifier until its answer or its timer Tx
(reference D15: 3 s for an AAR, an RTSP box is waiting), and fails pending
requests over to the next open peer with the T flag, same End-to-End id and
a new Hop-by-Hop id, when their peer turns SUSPECT or goes DOWN (RFC 6733
5.5.4).  Without an alternative, a DOWN peer fails its requests at once.
Like :class:`~hostednat.diameter.peer.PeerMachine` it takes ``now`` and does
no I/O.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Iterable, Sequence

import attrs

from hostednat.diameter.peer import (
    AnswerReceived,
    GroupEvent,
    PeerEvent,
    PeerMachine,
    PeerSuspected,
    PeerWentDown,
    RequestAnswered,
    RequestFailed,
)
from hostednat.diameter.results import (
    DiameterFailure,
    NoPeerAvailable,
    PeerFailed,
    RequestTimedOut,
)


@attrs.define
class _Pending:
    key: int
    data: bytes
    peer: str
    hop_by_hop_id: int
    deadline: float
    failed_over: bool = False


class PeerGroup:
    """SPDF peers in priority order, with pending requests and failover."""

    def __init__(
        self,
        peers: Iterable[PeerMachine],
        request_timeout: float = 3.0,
        rng: random.Random | None = None,
    ) -> None:
        self.peers = list(peers)
        self._by_name = {p.name: p for p in self.peers}
        self.request_timeout = request_timeout
        self._rng = rng or random.Random()
        self._end_to_end: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._by_hop: dict[tuple[str, int], int] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._events: deque[GroupEvent] = deque()

    def peer(self, name: str) -> PeerMachine:
        """The machine called ``name``."""
        return self._by_name[name]

    @property
    def available(self) -> bool:
        """Whether some peer would take a request now."""
        return any(p.is_available for p in self.peers)

    @property
    def pending_count(self) -> int:
        """Requests still waiting for an answer."""
        return len(self._pending)

    def start(self, now: float) -> None:
        """Connect to every peer."""
        for peer in self.peers:
            peer.start(now)
        self._collect()

    def close(self, now: float) -> None:
        """DPR every open peer, fail what is pending."""
        for peer in self.peers:
            peer.close(now)
        for key in list(self._pending):
            self._fail(key, PeerFailed("shutting down"))
        self._collect()

    def send_request(
        self, data: bytes, now: float, timeout: float | None = None
    ) -> int:
        """Send an encoded request; return its key (End-to-End id).

        :raises NoPeerAvailable: no peer is OKAY.
        """
        peer = self._choose()
        if peer is None:
            raise NoPeerAvailable()
        key = self._next_end_to_end(now)
        hop_by_hop = peer.send_request(data, key)
        deadline = now + (self.request_timeout if timeout is None else timeout)
        self._pending[key] = _Pending(key, data, peer.name, hop_by_hop, deadline)
        self._by_hop[(peer.name, hop_by_hop)] = key
        heapq.heappush(self._deadlines, (deadline, key))
        return key

    def send_answer(self, peer: str, data: bytes) -> None:
        """Answer a request that came from ``peer``."""
        self._by_name[peer].send_answer(data)

    # transport inputs, by peer name

    def connection_made(
        self, peer: str, now: float, local_addresses: Sequence[str] = ()
    ) -> None:
        """``peer``'s connection is up."""
        self._by_name[peer].connection_made(now, local_addresses)
        self._collect(now)

    def connection_failed(self, peer: str, now: float, reason: str = "") -> None:
        """Connecting to ``peer`` failed."""
        self._by_name[peer].connection_failed(now, reason or "connect failed")
        self._collect(now)

    def connection_lost(self, peer: str, now: float, reason: str = "") -> None:
        """``peer``'s connection closed."""
        self._by_name[peer].connection_lost(now, reason or "connection lost")
        self._collect(now)

    def receive_data(self, peer: str, data: bytes, now: float) -> None:
        """Bytes arrived from ``peer``."""
        self._by_name[peer].receive_data(data, now)
        self._collect(now)

    def get_timer(self) -> float | None:
        """The earliest deadline of any peer or pending request."""
        timers = [t for t in (p.get_timer() for p in self.peers) if t is not None]
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        if self._deadlines:
            timers.append(self._deadlines[0][0])
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        """Run the peer timers and request timers due at ``now``."""
        for peer in self.peers:
            peer.handle_timer(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            pending = self._pending.get(key)
            if pending is not None and pending.deadline <= now:
                self._fail(key, RequestTimedOut())
        self._collect(now)

    def data_to_send(self) -> list[tuple[str, bytes]]:
        """``(peer, bytes)`` for every peer with something to send."""
        found = []
        for peer in self.peers:
            data = peer.data_to_send()
            if data:
                found.append((peer.name, data))
        return found

    def next_event(self) -> GroupEvent | None:
        """The oldest pending event, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- internals ------------------------------------------------------------

    def _choose(self, excluding: str | None = None) -> PeerMachine | None:
        for peer in self.peers:
            if peer.is_available and peer.name != excluding:
                return peer
        return None

    def _next_end_to_end(self, now: float) -> int:
        if self._end_to_end is None:
            # RFC 6733 3: low 12 bits of the time in the high 12 bits.
            seed = (int(now) & 0xFFF) << 20
            self._end_to_end = seed | self._rng.getrandbits(20)
        self._end_to_end = (self._end_to_end + 1) & 0xFFFFFFFF
        while self._end_to_end in self._pending:
            self._end_to_end = (self._end_to_end + 1) & 0xFFFFFFFF
        return self._end_to_end

    def _collect(self, now: float | None = None) -> None:
        for peer in self.peers:
            while (event := peer.next_event()) is not None:
                self._route(event, now)

    def _route(self, event: PeerEvent, now: float | None) -> None:
        if isinstance(event, AnswerReceived):
            key = self._by_hop.pop((event.peer, event.header.hop_by_hop_id), None)
            pending = self._pending.pop(key, None) if key is not None else None
            if pending is not None:
                self._events.append(
                    RequestAnswered(
                        pending.key, event.peer, event.header, event.message
                    )
                )
            return
        self._events.append(event)
        if isinstance(event, PeerSuspected | PeerWentDown):
            self._fail_over(event.peer, down=isinstance(event, PeerWentDown))

    def _fail_over(self, name: str, down: bool) -> None:
        for pending in [p for p in self._pending.values() if p.peer == name]:
            alternate = self._choose(excluding=name)
            if alternate is None:
                if down:
                    self._fail(pending.key, PeerFailed())
                continue
            # RFC 6733 5.5.4: same End-to-End id, new Hop-by-Hop id, T flag.
            self._by_hop.pop((name, pending.hop_by_hop_id), None)
            self._by_name[name].forget(pending.hop_by_hop_id)
            hop_by_hop = alternate.send_request(pending.data, pending.key, True)
            pending.peer = alternate.name
            pending.hop_by_hop_id = hop_by_hop
            pending.failed_over = True
            self._by_hop[(alternate.name, hop_by_hop)] = pending.key

    def _fail(self, key: int, failure: DiameterFailure) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._by_hop.pop((pending.peer, pending.hop_by_hop_id), None)
        self._by_name[pending.peer].forget(pending.hop_by_hop_id)
        self._events.append(RequestFailed(key, failure))
