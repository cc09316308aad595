"""UserspaceBindingTable over real loopback sockets and the real reactor.

A "server" socket sends media to a binding's core ports, a "box" socket
punches to its access ports, and an "intruder" socket on 127.0.0.2 plays a
foreign source.  Waits for datagrams are bounded by a deadline.  Where the
latching timers matter, the table gets a reactor whose time is a
:class:`~twisted.internet.task.Clock` while its sockets stay real.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, Logger

from hostednat.nat.binding import (
    Binding,
    BindingCounters,
    BindingFailed,
    BindingRequest,
    Endpoint,
    Leg,
    NoPortsAvailable,
    PortPair,
)
from hostednat.nat.ports import PortPool
from hostednat.nat.userspace import (
    EVENT_OBSERVER_FAILED,
    RelayReactor,
    UserspaceBindingTable,
)

LOOPBACK = "127.0.0.1"
FOREIGN = "127.0.0.2"
# Below Linux's ephemeral range (32768-60999), so bound test sockets rarely
# collide with them; a collision is retried by the table anyway.
ACCESS_RANGE = (24000, 24999)
CORE_RANGE = (25000, 25999)
DEADLINE = 2.0

_F = TypeVar("_F", bound=Callable[..., Coroutine[Any, Any, None]])


def twisted_test(test: _F) -> _F:
    """Run the coroutine ``test`` on the reactor (pytest-twisted)."""
    marked: _F = pytest_twisted.ensureDeferred(test)
    return marked


def _installed_reactor() -> Any:
    """The reactor pytest-twisted installed and runs."""
    from twisted.internet import reactor

    return reactor


class ClockedReactor:
    """The real reactor for descriptors, a Clock for the time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._reactor = _installed_reactor()

    def addReader(self, reader: IReadDescriptor) -> None:
        """Watch ``reader`` on the real reactor."""
        self._reactor.addReader(reader)

    def removeReader(self, reader: IReadDescriptor) -> None:
        """Stop watching ``reader``."""
        self._reactor.removeReader(reader)

    def seconds(self) -> float:
        """The clock's time."""
        return self.clock.seconds()


class RecordingObserver:
    """Keeps every latch the table reports."""

    def __init__(self) -> None:
        self.latches: list[tuple[Binding, Leg, Endpoint]] = []

    def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
        """Record the latch."""
        self.latches.append((binding, leg, source))


class FirstFree(random.Random):
    """Always draws the first free slot, to make retries predictable."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        """The first index, always."""
        return 0


class Sockets:
    """Test sockets, closed at teardown."""

    def __init__(self) -> None:
        self._open: list[socket.socket] = []

    def udp(self, host: str = LOOPBACK, port: int = 0) -> socket.socket:
        """A non-blocking UDP socket bound to ``host``:``port``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._open.append(sock)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        """Close every socket made."""
        for sock in self._open:
            sock.close()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    """Sockets for the test's server, box and intruder."""
    made = Sockets()
    yield made
    made.close()


@pytest.fixture
def observer() -> RecordingObserver:
    """The observer the ``table`` fixture reports to."""
    return RecordingObserver()


@pytest.fixture
def clock() -> Clock:
    """The time the ``table`` fixture sees."""
    return Clock()


def make_table(
    reactor: Any,
    observer: RecordingObserver | None = None,
    access: PortPool | None = None,
    core: PortPool | None = None,
) -> UserspaceBindingTable:
    """A loopback table with a 30 s window and a 10 s relatch delay."""
    return UserspaceBindingTable(
        cast(RelayReactor, reactor),
        access_address=LOOPBACK,
        core_address=LOOPBACK,
        access_pool=access or PortPool(*ACCESS_RANGE),
        core_pool=core or PortPool(*CORE_RANGE),
        latch_window=30.0,
        relatch_after=10.0,
        receive_buffer=1 << 20,
        observer=observer,
    )


@pytest.fixture
def table(observer: RecordingObserver, clock: Clock) -> Iterator[UserspaceBindingTable]:
    """A table on real sockets whose time is the ``clock`` fixture."""
    made = make_table(ClockedReactor(clock), observer)
    yield made
    made.close()


def request(box: str = LOOPBACK, single: bool = False) -> BindingRequest:
    """A binding request from a box at ``box``."""
    ports = PortPair(5000) if single else PortPair(5000, 5001)
    return BindingRequest(box, ports, session_key="test")


def endpoint(sock: socket.socket) -> Endpoint:
    """Where ``sock`` is bound."""
    host, port = sock.getsockname()
    return Endpoint(host, port)


def access(binding: Binding, leg: Leg) -> tuple[str, int]:
    """The access-side address of ``leg``."""
    return (LOOPBACK, binding.access.port(leg) or 0)


def core(binding: Binding, leg: Leg) -> tuple[str, int]:
    """The core-side address of ``leg``."""
    return (LOOPBACK, binding.core.port(leg) or 0)


async def pause() -> None:
    """Let the reactor run for a moment."""
    await deferLater(_installed_reactor(), 0.002, lambda: None)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the reactor run until ``condition`` holds, or fail at the deadline."""
    reactor = _installed_reactor()
    deadline = reactor.seconds() + DEADLINE
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met before the deadline")
        await pause()


async def receive(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    """The next datagram on ``sock``, waiting up to the deadline."""
    reactor = _installed_reactor()
    deadline = reactor.seconds() + DEADLINE
    while True:
        try:
            data, address = sock.recvfrom(65535)
        except BlockingIOError:
            if reactor.seconds() > deadline:
                raise AssertionError("no datagram before the deadline") from None
            await pause()
        else:
            return data, address


def assert_nothing_waiting(sock: socket.socket) -> None:
    """Fail if a datagram is queued on ``sock``."""
    with pytest.raises(BlockingIOError):
        sock.recvfrom(65535)


def counted(
    table: UserspaceBindingTable, binding: Binding, field: str, value: int
) -> Callable[[], bool]:
    """A condition: ``field`` of the binding's counters equals ``value``."""
    return lambda: getattr(table.counters(binding), field) == value


def test_allocate_binds_an_even_odd_pair_on_each_side(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """A two-leg request gets bound even/odd pairs on the access and core sides."""
    binding = table.allocate(request())

    for pair in (binding.access, binding.core):
        assert pair.rtp % 2 == 0 and pair.rtcp == pair.rtp + 1
        for port in (pair.rtp, pair.rtcp):
            with pytest.raises(OSError) as raised:
                sockets.udp(LOOPBACK, port)
            assert raised.value.errno == errno.EADDRINUSE
    assert ACCESS_RANGE[0] <= binding.access.rtp <= ACCESS_RANGE[1]
    assert CORE_RANGE[0] <= binding.core.rtp <= CORE_RANGE[1]
    assert (binding.access_address, binding.core_address) == (LOOPBACK, LOOPBACK)


def test_single_port_request_binds_one_port_per_side(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """A single-port transport gets one access and one core port."""
    binding = table.allocate(request(single=True))

    assert binding.single_port and binding.core.single
    sockets.udp(LOOPBACK, binding.access.rtp + 1).close()


@twisted_test
async def test_media_before_the_punch_is_dropped(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """Media from the server is counted and dropped until the box latches."""
    binding = table.allocate(request())
    server, box = sockets.udp(), sockets.udp()
    box.connect(access(binding, Leg.RTP))

    server.sendto(b"early media", core(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_before_latch", 1))

    assert_nothing_waiting(box)
    assert table.counters(binding).packets_to_box == 0


@twisted_test
async def test_punch_latches_and_media_comes_from_the_access_port(
    table: UserspaceBindingTable, sockets: Sockets, observer: RecordingObserver
) -> None:
    """After the box's punch, media reaches it from the port it punched to."""
    binding = table.allocate(request())
    server, box = sockets.udp(), sockets.udp()

    box.sendto(b"\xce\xfa\xed\xfe", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)
    server.sendto(b"media" * 100, core(binding, Leg.RTP))
    data, source = await receive(box)

    assert (data, source) == (b"media" * 100, access(binding, Leg.RTP))
    assert binding.latched == {Leg.RTP: endpoint(box)}
    assert observer.latches == [(binding, Leg.RTP, endpoint(box))]
    counters = table.counters(binding)
    assert (counters.latch_datagrams, counters.packets_to_box) == (1, 1)
    assert counters.bytes_to_box == 500


@twisted_test
async def test_box_rtcp_reaches_the_server_from_the_core_rtcp_port(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """Box RTCP sent to the access RTCP port leaves from the core RTCP port."""
    binding = table.allocate(request())
    server_rtp, server_rtcp, box_rtcp = sockets.udp(), sockets.udp(), sockets.udp()
    await table.install(binding, endpoint(server_rtp), endpoint(server_rtcp))

    box_rtcp.sendto(b"\x81\xc9\x00\x07receiver report", access(binding, Leg.RTCP))
    data, source = await receive(server_rtcp)

    assert (data, source) == (
        b"\x81\xc9\x00\x07receiver report",
        core(binding, Leg.RTCP),
    )
    assert binding.server == {
        Leg.RTP: endpoint(server_rtp),
        Leg.RTCP: endpoint(server_rtcp),
    }
    assert binding.latched == {Leg.RTCP: endpoint(box_rtcp)}
    counters = table.counters(binding)
    assert (counters.packets_to_server, counters.bytes_to_server) == (1, 19)
    assert_nothing_waiting(server_rtp)


@twisted_test
async def test_box_datagrams_are_dropped_until_the_server_is_known(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """Without install the punch latches but goes nowhere; after it, RTCP flows."""
    binding = table.allocate(request())
    server_rtcp, box_rtcp = sockets.udp(), sockets.udp()

    box_rtcp.sendto(b"punch", access(binding, Leg.RTCP))
    await wait_until(lambda: Leg.RTCP in binding.latched)
    await table.install(binding, Endpoint(LOOPBACK, 9), endpoint(server_rtcp))
    box_rtcp.sendto(b"report", access(binding, Leg.RTCP))

    assert await receive(server_rtcp) == (b"report", core(binding, Leg.RTCP))
    assert table.counters(binding).packets_to_server == 1


@twisted_test
async def test_foreign_source_is_dropped_and_never_latches(
    table: UserspaceBindingTable, sockets: Sockets, observer: RecordingObserver
) -> None:
    """A datagram from another IP is counted, dropped, and latches nothing."""
    binding = table.allocate(request())
    server, box, intruder = sockets.udp(), sockets.udp(), sockets.udp(FOREIGN)
    await table.install(binding, endpoint(server), endpoint(server))

    intruder.sendto(b"hijack", access(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_foreign_source", 1))
    assert binding.latched == {}
    assert observer.latches == []

    box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)
    intruder.sendto(b"hijack", access(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_foreign_source", 2))
    server.sendto(b"media", core(binding, Leg.RTP))

    assert await receive(box) == (b"media", access(binding, Leg.RTP))
    assert binding.latched == {Leg.RTP: endpoint(box)}
    assert_nothing_waiting(intruder)
    assert (await receive(server))[0] == b"punch"
    assert table.counters(binding).packets_to_server == 1


@twisted_test
async def test_rtp_and_rtcp_latch_independently(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """Latching RTP leaves RTCP unlatched: its media is still dropped."""
    binding = table.allocate(request())
    server, box_rtp, box_rtcp = sockets.udp(), sockets.udp(), sockets.udp()

    box_rtp.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)
    server.sendto(b"sender report", core(binding, Leg.RTCP))
    await wait_until(counted(table, binding, "dropped_before_latch", 1))
    server.sendto(b"media", core(binding, Leg.RTP))

    assert await receive(box_rtp) == (b"media", access(binding, Leg.RTP))
    assert_nothing_waiting(box_rtcp)
    assert Leg.RTCP not in binding.latched


@twisted_test
async def test_explicit_latch_redirects_media_without_telling_the_observer(
    table: UserspaceBindingTable, sockets: Sockets, observer: RecordingObserver
) -> None:
    """latch() sends the leg's media to the given endpoint at once."""
    binding = table.allocate(request())
    server, box = sockets.udp(), sockets.udp()

    await table.latch(binding, Leg.RTP, endpoint(box))
    server.sendto(b"media", core(binding, Leg.RTP))

    assert await receive(box) == (b"media", access(binding, Leg.RTP))
    assert binding.latched == {Leg.RTP: endpoint(box)}
    assert observer.latches == []


@twisted_test
async def test_punch_after_the_window_is_refused_until_relatch(
    table: UserspaceBindingTable, sockets: Sockets, clock: Clock
) -> None:
    """A punch 30 s after allocation is dropped; relatch() opens a new window."""
    binding = table.allocate(request())
    box = sockets.udp()

    clock.advance(30.0)
    box.sendto(b"late punch", access(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_before_latch", 1))
    assert binding.latched == {}

    table.relatch(binding)
    box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)

    assert binding.latched == {Leg.RTP: endpoint(box)}


@twisted_test
async def test_nat_rebinding_relatches_after_silence(
    table: UserspaceBindingTable,
    sockets: Sockets,
    clock: Clock,
    observer: RecordingObserver,
) -> None:
    """A new port of the box's IP takes over only once the old one is silent."""
    binding = table.allocate(request())
    server, old_mapping, new_mapping = sockets.udp(), sockets.udp(), sockets.udp()
    old_mapping.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)

    clock.advance(5.0)
    new_mapping.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_foreign_source", 1))
    assert binding.latched == {Leg.RTP: endpoint(old_mapping)}

    clock.advance(5.0)
    new_mapping.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: binding.latched[Leg.RTP] == endpoint(new_mapping))
    server.sendto(b"media", core(binding, Leg.RTP))

    assert await receive(new_mapping) == (b"media", access(binding, Leg.RTP))
    assert_nothing_waiting(old_mapping)
    assert [latch[2] for latch in observer.latches] == [
        endpoint(old_mapping),
        endpoint(new_mapping),
    ]


@twisted_test
async def test_remove_releases_ports_and_stops_relaying(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """After remove() the ports are free to bind and the counts are retired."""
    binding = table.allocate(request())
    box = sockets.udp()
    box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)

    await table.remove(binding)

    for pair in (binding.access, binding.core):
        sockets.udp(LOOPBACK, pair.rtp)
        sockets.udp(LOOPBACK, pair.rtcp or 0)
    assert len(table) == 0
    assert table.totals().latch_datagrams == 1
    with pytest.raises(BindingFailed):
        table.counters(binding)


@twisted_test
async def test_remove_is_idempotent_and_removed_bindings_are_unknown(
    table: UserspaceBindingTable,
) -> None:
    """A second remove() does nothing; other calls on a removed binding fail."""
    binding = table.allocate(request())
    await table.remove(binding)

    await table.remove(binding)

    with pytest.raises(BindingFailed):
        await table.install(binding, Endpoint(LOOPBACK, 9), None)
    with pytest.raises(BindingFailed):
        await table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 9))
    with pytest.raises(BindingFailed):
        table.relatch(binding)


@twisted_test
async def test_latch_on_a_missing_leg_fails(table: UserspaceBindingTable) -> None:
    """A single-port binding has no RTCP leg to latch."""
    binding = table.allocate(request(single=True))

    with pytest.raises(BindingFailed):
        await table.latch(binding, Leg.RTCP, Endpoint(LOOPBACK, 9))


def test_seam_calls_return_fired_deferreds(table: UserspaceBindingTable) -> None:
    """install, latch, remove and close answer with already-fired Deferreds."""
    binding = table.allocate(request())
    results: list[object] = []

    calls: list[Deferred[None]] = [
        table.install(binding, Endpoint(LOOPBACK, 9), Endpoint(LOOPBACK, 10)),
        table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 11)),
        table.remove(binding),
        table.close(),
    ]
    for call in calls:
        call.addCallback(results.append)

    assert results == [None, None, None, None]


def test_close_removes_every_binding() -> None:
    """close() releases the ports of all bindings."""
    access_pool, core_pool = PortPool(*ACCESS_RANGE), PortPool(*CORE_RANGE)
    table = make_table(_installed_reactor(), access=access_pool, core=core_pool)
    for _ in range(3):
        table.allocate(request())

    table.close()

    assert len(table) == 0
    assert access_pool.free_pairs == access_pool.size
    assert core_pool.free_pairs == core_pool.size


@twisted_test
async def test_totals_add_live_and_removed_bindings(
    table: UserspaceBindingTable, sockets: Sockets
) -> None:
    """totals() sums the bindings still allocated and those removed."""
    first, second = table.allocate(request()), table.allocate(request())
    box = sockets.udp()
    for binding in (first, second):
        box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in first.latched and Leg.RTP in second.latched)

    await table.remove(first)

    assert table.totals() == BindingCounters(latch_datagrams=2)
    assert table.counters(second) == BindingCounters(latch_datagrams=1)


def test_allocate_and_remove_leak_no_descriptors() -> None:
    """A thousand allocate/remove cycles leave the descriptor count unchanged."""
    access_pool, core_pool = PortPool(*ACCESS_RANGE), PortPool(*CORE_RANGE)
    table = make_table(_installed_reactor(), access=access_pool, core=core_pool)
    before = len(os.listdir("/proc/self/fd"))

    for _ in range(1000):
        table.remove(table.allocate(request()))

    assert len(os.listdir("/proc/self/fd")) == before
    assert access_pool.free_pairs == access_pool.size
    assert core_pool.free_pairs == core_pool.size


def test_port_in_use_elsewhere_is_skipped(sockets: Sockets) -> None:
    """A port held by another socket is retried on another slot and returned."""
    first = ACCESS_RANGE[0]
    access_pool = PortPool(first, first + 3, rng=FirstFree())
    sockets.udp(LOOPBACK, first)
    table = make_table(_installed_reactor(), access=access_pool)

    binding = table.allocate(request())

    assert binding.access.rtp == first + 2
    assert access_pool.free_pairs == 1
    table.close()


def test_every_port_in_use_raises_no_ports_available(sockets: Sockets) -> None:
    """When all tried ports are held elsewhere, allocation reports exhaustion."""
    first = ACCESS_RANGE[0]
    access_pool = PortPool(first, first + 1)
    sockets.udp(LOOPBACK, first + 1)
    table = make_table(_installed_reactor(), access=access_pool)

    with pytest.raises(NoPortsAvailable):
        table.allocate(request())

    assert access_pool.free_pairs == 1


def test_exhausted_core_pool_gives_back_the_access_ports(sockets: Sockets) -> None:
    """If the core side fails, the access ports are closed and released."""
    access_pool = PortPool(*ACCESS_RANGE)
    core_pool = PortPool(CORE_RANGE[0], CORE_RANGE[0] + 1)
    table = make_table(_installed_reactor(), access=access_pool, core=core_pool)
    kept = table.allocate(request())

    with pytest.raises(NoPortsAvailable):
        table.allocate(request())

    assert access_pool.free_pairs == access_pool.size - 1
    assert len(table) == 1
    table.remove(kept)


def test_unbindable_address_raises_binding_failed() -> None:
    """An access address that is not local fails with BindingFailed (503)."""
    access_pool = PortPool(*ACCESS_RANGE)
    table = UserspaceBindingTable(
        cast(RelayReactor, _installed_reactor()),
        access_address="192.0.2.1",
        core_address=LOOPBACK,
        access_pool=access_pool,
        core_pool=PortPool(*CORE_RANGE),
        latch_window=30.0,
        relatch_after=10.0,
    )

    with pytest.raises(BindingFailed) as raised:
        table.allocate(request())

    assert raised.value.status == 503
    assert access_pool.free_pairs == access_pool.size


def test_box_address_must_be_an_ip(table: UserspaceBindingTable) -> None:
    """A box address that is not an IP is refused before any port is taken."""
    with pytest.raises(ValueError):
        table.allocate(request(box="box.example"))

    assert len(table) == 0


@twisted_test
async def test_failing_observer_is_logged_and_relaying_goes_on(
    sockets: Sockets, clock: Clock
) -> None:
    """An observer that raises is logged; the leg still latches and relays."""

    class Failing:
        def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
            raise RuntimeError("observer bug")

    events: list[dict[str, Any]] = []
    table = make_table(ClockedReactor(clock))
    table.observer = Failing()
    table._log = Logger(observer=cast(ILogObserver, events.append))
    binding = table.allocate(request())
    server, box = sockets.udp(), sockets.udp()

    box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: len(events) == 1)
    server.sendto(b"media", core(binding, Leg.RTP))

    assert await receive(box) == (b"media", access(binding, Leg.RTP))
    assert events[0]["hostednat_event"] == EVENT_OBSERVER_FAILED
    assert events[0]["log_failure"].check(RuntimeError)
    table.close()


@twisted_test
async def test_observer_may_remove_the_binding_it_hears_about(
    sockets: Sockets, clock: Clock
) -> None:
    """Removing the binding from inside binding_latched stops its reader cleanly."""
    table = make_table(ClockedReactor(clock))

    class Remover:
        def __init__(self) -> None:
            self.called = 0

        def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
            self.called += 1
            table.remove(binding)

    remover = Remover()
    table.observer = remover
    binding = table.allocate(request())
    box = sockets.udp()

    for _ in range(3):
        box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: remover.called == 1)
    await pause()

    assert len(table) == 0
    assert table.totals().latch_datagrams == 1


class HookedTable(UserspaceBindingTable):
    """Records the latches its hook hears of; answers with ``answer``."""

    def __init__(self, reactor: Any, answer: Deferred[None]) -> None:
        super().__init__(
            cast(RelayReactor, reactor),
            access_address=LOOPBACK,
            core_address=LOOPBACK,
            access_pool=PortPool(*ACCESS_RANGE),
            core_pool=PortPool(*CORE_RANGE),
            latch_window=30.0,
            relatch_after=10.0,
        )
        self.answer = answer
        self.heard: list[tuple[Binding, Leg, Endpoint]] = []

    def leg_latched(
        self, binding: Binding, leg: Leg, source: Endpoint
    ) -> Deferred[None]:
        """Record the latch; give the prepared answer."""
        assert binding.latched[leg] == source
        self.heard.append((binding, leg, source))
        return self.answer


@twisted_test
async def test_leg_latched_hears_guard_and_explicit_latches(
    sockets: Sockets, clock: Clock
) -> None:
    """The hook runs after every latch; latch() returns its result, and a
    failure of a guard's latch is dropped, not left unhandled."""
    refused: Deferred[None] = Deferred()
    refused.errback(BindingFailed("kernel said no"))
    table = HookedTable(ClockedReactor(clock), refused)
    binding = table.allocate(request())
    box = sockets.udp()

    box.sendto(b"punch", access(binding, Leg.RTCP))
    await wait_until(lambda: len(table.heard) == 1)
    table.answer = Deferred()
    explicit = table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 9))

    assert table.heard == [
        (binding, Leg.RTCP, endpoint(box)),
        (binding, Leg.RTP, Endpoint(LOOPBACK, 9)),
    ]
    assert explicit is table.answer
    table.answer.callback(None)
    table.close()


@twisted_test
async def test_mark_alive_holds_off_a_rebinding(
    sockets: Sockets, table: UserspaceBindingTable, clock: Clock
) -> None:
    """A leg marked alive does not relatch to another port of the box's IP
    until it has been silent for relatch_after again."""
    binding = table.allocate(request())
    first, second = sockets.udp(), sockets.udp()
    first.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)

    clock.advance(9.0)
    table.mark_alive(binding, Leg.RTP, clock.seconds())
    clock.advance(9.0)
    second.sendto(b"rebound", access(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_foreign_source", 1))
    assert binding.latched[Leg.RTP] == endpoint(first)

    clock.advance(1.0)
    second.sendto(b"rebound", access(binding, Leg.RTP))
    await wait_until(lambda: binding.latched[Leg.RTP] == endpoint(second))


def test_contains_and_iter_follow_allocation(table: UserspaceBindingTable) -> None:
    """``in`` and iteration show the bindings allocated and not removed."""
    kept, removed = table.allocate(request()), table.allocate(request())
    table.remove(removed)

    assert kept in table and removed not in table
    assert list(table) == [kept]


@twisted_test
async def test_held_leg_relays_nothing_until_resumed(
    sockets: Sockets, table: UserspaceBindingTable
) -> None:
    """A held leg still latches but forwards neither way; resumed, it does."""
    binding = table.allocate(request())
    server, box = sockets.udp(), sockets.udp()
    await table.install(binding, endpoint(server), None)
    table.hold(binding, Leg.RTP, True)

    box.sendto(b"punch", access(binding, Leg.RTP))
    await wait_until(lambda: Leg.RTP in binding.latched)
    server.sendto(b"media", core(binding, Leg.RTP))
    await wait_until(counted(table, binding, "dropped_before_latch", 1))
    assert_nothing_waiting(box)
    assert_nothing_waiting(server)

    table.hold(binding, Leg.RTP, False)
    server.sendto(b"media", core(binding, Leg.RTP))
    assert await receive(box) == (b"media", access(binding, Leg.RTP))
    box.sendto(b"report", access(binding, Leg.RTP))
    assert await receive(server) == (b"report", core(binding, Leg.RTP))
