"""KernelBindingTable's state machine against a fake kernel; no root needed.

The userspace side is real (loopback sockets, latch guards); the reactor is
a :class:`~twisted.internet.task.Clock` that records readers, and a test
drives a reader's ``doRead`` itself after sending it a datagram.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from hostednat.events import (
    KERNEL_BINDING_FAILED,
    KERNEL_BINDING_REMOVED,
    KERNEL_RECONCILED,
)
from hostednat.nat.binding import (
    Binding,
    BindingFailed,
    BindingRequest,
    Endpoint,
    Leg,
    PortPair,
)
from hostednat.nat.kernel import (
    ForwardedPackets,
    KernelBackendUnavailable,
    KernelBindingTable,
    check_capability,
)
from hostednat.nat.kernel_nat import FlowCounts, KernelNatError, Reconciled
from hostednat.nat.nftables import LegFlow
from hostednat.nat.ports import PortPool

LOOPBACK = "127.0.0.1"
SERVER_RTP = Endpoint("127.0.0.1", 6000)
SERVER_RTCP = Endpoint("127.0.0.1", 6001)


class RecordingReactor(Clock):
    """A Clock that keeps the readers the table registers."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


class FakeNat:
    """Records what the table asks of the kernel; answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[LegFlow, ...]]] = []
        self.refuse: int = 0
        self.counts: dict[LegFlow, FlowCounts] = {}
        self.removal: Deferred[Any] | None = None
        self.reconciled = Reconciled(0, 0)

    def start(self) -> Deferred[Reconciled]:
        return succeed(self.reconciled)

    def install(self, flow: LegFlow) -> Deferred[None]:
        self.calls.append(("install", (flow,)))
        if self.refuse:
            return fail(KernelNatError(f"install {flow.access}", self.refuse))
        return succeed(None)

    def relatch(self, old: LegFlow, new: LegFlow) -> Deferred[FlowCounts | None]:
        self.calls.append(("relatch", (old, new)))
        return succeed(self.counts.pop(old, None))

    def remove(self, flow: LegFlow) -> Deferred[FlowCounts | None]:
        self.calls.append(("remove", (flow,)))
        if self.removal is not None:
            return self.removal
        return succeed(self.counts.pop(flow, FlowCounts(10, 2000, 1, 100)))

    def read(self, flows: list[LegFlow]) -> Deferred[dict[LegFlow, FlowCounts | None]]:
        return succeed({flow: self.counts.get(flow) for flow in flows})

    def stop(self) -> Deferred[None]:
        self.calls.append(("stop", ()))
        return succeed(None)


@pytest.fixture
def reactor() -> RecordingReactor:
    """A recording Clock reactor."""
    return RecordingReactor()


@pytest.fixture
def nat() -> FakeNat:
    """A fake kernel."""
    return FakeNat()


@pytest.fixture
def events() -> list[dict[str, Any]]:
    """Log events of the table, kept away from the suite's error check."""
    return []


@pytest.fixture
def table(
    reactor: RecordingReactor, nat: FakeNat, events: list[dict[str, Any]]
) -> Iterator[KernelBindingTable]:
    """A started kernel table on loopback."""
    made = KernelBindingTable(
        reactor,
        nat,
        access_address=LOOPBACK,
        core_address=LOOPBACK,
        access_pool=PortPool(26000, 26999),
        core_pool=PortPool(27000, 27999),
        latch_window=30.0,
        relatch_after=10.0,
        receive_buffer=1 << 16,
    )
    made._log = Logger(observer=cast(ILogObserver, events.append))
    made.start()
    yield made
    made.close()


def allocate(table: KernelBindingTable) -> Binding:
    """A two-leg binding for a box on loopback."""
    return table.allocate(BindingRequest(LOOPBACK, PortPair(5000, 5001), "s"))


def result(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired; raises its failure."""
    outcome: list[Any] = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def expected_flow(binding: Binding, leg: Leg, public: Endpoint) -> LegFlow:
    """The flow the table should hand the kernel for ``leg``."""
    server = SERVER_RTP if leg is Leg.RTP else SERVER_RTCP
    return LegFlow(
        server,
        Endpoint(LOOPBACK, binding.core.port(leg) or 0),
        Endpoint(LOOPBACK, binding.access.port(leg) or 0),
        public,
    )


def test_latch_after_install_puts_the_leg_in_the_kernel(
    table: KernelBindingTable, nat: FakeNat
) -> None:
    """A latch on an installed binding installs exactly that leg's flow."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    assert nat.calls == []

    public = Endpoint(LOOPBACK, 40000)
    result(table.latch(binding, Leg.RTP, public))
    assert nat.calls == [("install", (expected_flow(binding, Leg.RTP, public),))]


def test_latch_before_install_waits_for_the_server(
    table: KernelBindingTable, nat: FakeNat
) -> None:
    """A leg latched before the server is known goes in with install()."""
    binding = allocate(table)
    public = Endpoint(LOOPBACK, 40001)
    result(table.latch(binding, Leg.RTCP, public))
    assert nat.calls == []

    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    assert nat.calls == [("install", (expected_flow(binding, Leg.RTCP, public),))]


def test_second_latch_relatches_in_the_kernel(
    table: KernelBindingTable, nat: FakeNat
) -> None:
    """A new public endpoint moves the leg: one relatch, old to new."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    first, second = Endpoint(LOOPBACK, 40000), Endpoint(LOOPBACK, 40002)
    result(table.latch(binding, Leg.RTP, first))
    result(table.latch(binding, Leg.RTP, first))
    result(table.latch(binding, Leg.RTP, second))

    old = expected_flow(binding, Leg.RTP, first)
    new = expected_flow(binding, Leg.RTP, second)
    assert nat.calls == [("install", (old,)), ("relatch", (old, new))]


def test_refused_install_fails_with_503_and_errno(
    table: KernelBindingTable,
    nat: FakeNat,
    reactor: RecordingReactor,
    events: list[dict[str, Any]],
) -> None:
    """A netlink error fails the latch (503, errno kept), logs its errno,
    leaves no kernel flow to remove and gives the leg back to Python."""
    nat.refuse = 17
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    with pytest.raises(BindingFailed) as caught:
        result(table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 40000)))
    assert caught.value.status == 503
    assert getattr(caught.value, "errno", None) == 17
    failed = [e for e in events if e.get("hostednat_event")]
    assert [e["errno"] for e in failed] == [17]
    assert failed[0]["hostednat_event"] == KERNEL_BINDING_FAILED

    rtp = [r for r in reactor.readers if r.state.leg is Leg.RTP]
    assert all(reader.state.to_box is not None for reader in rtp)

    result(table.remove(binding))
    assert [name for name, _flows in nat.calls] == ["install"]


def test_remove_takes_flows_out_before_releasing_ports(
    table: KernelBindingTable, nat: FakeNat
) -> None:
    """Ports go back to the pool only once the kernel removal is done."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    result(table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 40000)))
    nat.removal = Deferred()

    removed = table.remove(binding)
    assert len(table) == 1
    nat.removal.callback(FlowCounts(10, 2000, 1, 100))
    result(removed)
    assert len(table) == 0
    assert table.totals().packets_to_box == 10


def test_kernel_counts_join_the_userspace_ones(
    table: KernelBindingTable, nat: FakeNat, reactor: RecordingReactor
) -> None:
    """Counter reads feed per-binding counts and the kernel/Python split."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    flow = expected_flow(binding, Leg.RTP, Endpoint(LOOPBACK, 40000))
    result(table.latch(binding, Leg.RTP, flow.public))
    nat.counts = {flow: FlowCounts(500, 100_000, 3, 300)}

    reactor.advance(2.0)
    counts = table.counters(binding)
    assert (counts.packets_to_box, counts.bytes_to_box) == (500, 100_000)
    assert (counts.packets_to_server, counts.bytes_to_server) == (3, 300)
    assert table.forwarded_packets() == ForwardedPackets(kernel=503, python=0)


def test_punch_through_the_guard_installs_the_leg(
    table: KernelBindingTable, nat: FakeNat, reactor: RecordingReactor
) -> None:
    """A datagram read by the access socket latches and reaches the kernel."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    box = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        box.bind((LOOPBACK, 0))
        box.sendto(b"punch", (LOOPBACK, binding.access.rtp))
        access_reader = next(
            r for r in reactor.readers if r.sock.getsockname()[1] == binding.access.rtp
        )
        select.select([access_reader.sock], [], [], 2.0)
        access_reader.doRead()
        public = Endpoint(*box.getsockname())
    finally:
        box.close()
    assert binding.latched[Leg.RTP] == public
    assert nat.calls == [("install", (expected_flow(binding, Leg.RTP, public),))]


def punch(reactor: RecordingReactor, binding: Binding, box: socket.socket) -> Endpoint:
    """Send one datagram from ``box`` to the RTP access port; let its reader
    handle it; the source it came from."""
    box.sendto(b"punch", (LOOPBACK, binding.access.rtp))
    reader = next(
        r for r in reactor.readers if r.sock.getsockname()[1] == binding.access.rtp
    )
    select.select([reader.sock], [], [], 2.0)
    reader.doRead()
    return Endpoint(*box.getsockname())


@pytest.fixture
def boxes() -> Iterator[list[socket.socket]]:
    """Two UDP sockets on loopback: two ports of the same box IP."""
    made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sock in made:
        sock.bind((LOOPBACK, 0))
    yield made
    for sock in made:
        sock.close()


@pytest.mark.parametrize(("box_talks", "relatched"), [(True, False), (False, True)])
def test_kernel_traffic_keeps_the_latched_endpoint_alive(
    table: KernelBindingTable,
    nat: FakeNat,
    reactor: RecordingReactor,
    boxes: list[socket.socket],
    box_talks: bool,
    relatched: bool,
) -> None:
    """Box packets counted in the kernel keep another port of the box's IP
    from relatching after relatch_after; without them it relatches."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    first = punch(reactor, binding, boxes[0])
    flow = expected_flow(binding, Leg.RTP, first)
    for second in range(1, 7):
        if box_talks:
            nat.counts[flow] = FlowCounts(100 * second, 0, second, 0)
        reactor.advance(2.0)

    other = punch(reactor, binding, boxes[1])
    assert (binding.latched[Leg.RTP] == other) is relatched
    calls = [name for name, _flows in nat.calls]
    assert calls == (["install", "relatch"] if relatched else ["install"])


def test_counts_survive_an_entry_that_expires_or_moves(
    table: KernelBindingTable, nat: FakeNat, reactor: RecordingReactor
) -> None:
    """An entry gone between reads keeps its last count; a relatch adds the
    old entry's final count; removal adds the last entry's."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    old = expected_flow(binding, Leg.RTP, Endpoint(LOOPBACK, 40000))
    result(table.latch(binding, Leg.RTP, old.public))
    nat.counts[old] = FlowCounts(100, 1000, 1, 10)
    reactor.advance(2.0)
    del nat.counts[old]
    reactor.advance(2.0)
    nat.counts[old] = FlowCounts(5, 50, 0, 0)
    reactor.advance(2.0)
    assert table.kernel_counts(binding) == FlowCounts(105, 1050, 1, 10)

    new = expected_flow(binding, Leg.RTP, Endpoint(LOOPBACK, 40002))
    nat.counts[old] = FlowCounts(7, 70, 0, 0)
    result(table.latch(binding, Leg.RTP, new.public))
    nat.counts[new] = FlowCounts(20, 200, 2, 20)
    result(table.remove(binding))
    assert table.forwarded_packets() == ForwardedPackets(kernel=130, python=0)


def test_release_logs_kernel_and_python_counts(
    table: KernelBindingTable,
    nat: FakeNat,
    reactor: RecordingReactor,
    events: list[dict[str, Any]],
    boxes: list[socket.socket],
) -> None:
    """Each release reports what the kernel and the Python relay forwarded;
    the punch latched and handed the leg over, so Python relayed nothing."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    public = punch(reactor, binding, boxes[0])
    nat.counts[expected_flow(binding, Leg.RTP, public)] = FlowCounts(40, 0, 3, 0)

    result(table.remove(binding))
    (released,) = [
        e for e in events if e.get("hostednat_event") == KERNEL_BINDING_REMOVED
    ]
    assert released["binding"] == binding.binding_id
    assert released["session"] == "s"
    counts = {key: released[key] for key in released if key.startswith(("kern", "py"))}
    assert counts == {
        "kernel_to_box": 40,
        "kernel_to_server": 3,
        "python_to_box": 0,
        "python_to_server": 0,
    }


def test_start_reports_what_reconciliation_removed(
    reactor: RecordingReactor, nat: FakeNat, events: list[dict[str, Any]]
) -> None:
    """Leftovers of a previous run removed at start are logged with counts."""
    nat.reconciled = Reconciled(elements=4, conntrack_deleted=2)
    made = KernelBindingTable(
        reactor,
        nat,
        access_address=LOOPBACK,
        core_address=LOOPBACK,
        access_pool=PortPool(26000, 26999),
        core_pool=PortPool(27000, 27999),
        latch_window=30.0,
        relatch_after=10.0,
    )
    made._log = Logger(observer=cast(ILogObserver, events.append))
    assert result(made.start()) == nat.reconciled
    (reconciled,) = events
    assert reconciled["hostednat_event"] == KERNEL_RECONCILED
    assert (reconciled["elements"], reconciled["conntrack_deleted"]) == (4, 2)
    result(made.close())


def test_close_removes_everything_and_stops_the_kernel(
    table: KernelBindingTable, nat: FakeNat
) -> None:
    """close() removes every kernel flow, then deletes the table."""
    binding = allocate(table)
    result(table.install(binding, SERVER_RTP, SERVER_RTCP))
    result(table.latch(binding, Leg.RTP, Endpoint(LOOPBACK, 40000)))
    result(table.close())
    assert [name for name, _flows in nat.calls] == ["install", "remove", "stop"]


@pytest.mark.parametrize(
    ("effective", "allowed"),
    [
        ("000001ffffffffff", True),
        ("0000000000001000", True),
        ("0000000000000000", False),
    ],
)
def test_capability_check(effective: str, allowed: bool) -> None:
    """Only an effective set holding CAP_NET_ADMIN (bit 12) passes."""
    status = f"Name:\tpython\nCapEff:\t{effective}\n"
    if allowed:
        check_capability(status)
    else:
        with pytest.raises(KernelBackendUnavailable, match="CAP_NET_ADMIN"):
            check_capability(status)
