"""KernelNat against the real kernel, in network namespaces made per test.

The topology is the lab's (:mod:`tests.lab.netns`): box behind a gateway
that masquerades with random ports, the edge, and a media host.  Traffic
stays inside those namespaces.  Every test skips without root.
"""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from hostednat.nat.binding import BindingRequest, Endpoint, Leg, PortPair
from hostednat.nat.kernel import KernelBindingTable
from hostednat.nat.kernel_nat import KernelNat, Reconciled
from hostednat.nat.nftables import LegFlow, NatTable
from hostednat.nat.ports import PortPool
from tests.lab.netns import Topology, open_socket, run_command, run_in_netns


def _privileged() -> bool:
    """Whether this process may make namespaces and change nftables: root
    with CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12) in its effective set."""
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    capabilities = int(effective.split()[1], 16)
    return os.geteuid() == 0 and capabilities & (1 << 21 | 1 << 12) == 1 << 21 | 1 << 12


pytestmark = pytest.mark.skipif(
    not _privileged(), reason="needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
)

T = TypeVar("T")

ACCESS_PORT = 30000
CORE_PORT = 31000
SERVER_PORT = 6000
BOX_PORT = 5000
ROOT = Path(__file__).resolve().parents[2]


class ThreadPump:
    """Stands in for the reactor: runs ``callFromThread`` calls on demand."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
        self._calls = queue.SimpleQueue()

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue ``function`` for the test thread."""
        self._calls.put((function, args))

    def wait(self, deferred: Deferred[T], timeout: float = 20.0) -> T:
        """Run queued calls until ``deferred`` fires; its result or error."""
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        deadline = time.monotonic() + timeout
        while not outcome:
            function, args = self._calls.get(timeout=deadline - time.monotonic())
            function(*args)
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]  # type: ignore[no-any-return]


class Edge:
    """The lab, a started KernelNat in its edge, and one leg's sockets."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.addr = topology.addr
        self.pump = ThreadPump()
        self.table = NatTable(
            f"hn{os.getpid()}", self.addr["edge_access"], self.addr["edge_core"]
        )
        self.nat = KernelNat(self.pump, self.table, netns=topology.ns("edge"))
        self.access = self._bound("edge", self.addr["edge_access"], ACCESS_PORT)
        self.core = self._bound("edge", self.addr["edge_core"], CORE_PORT)
        self.box = self._bound("box", self.addr["box"], BOX_PORT)
        self.server = self._bound("media", self.addr["media"], SERVER_PORT)

    def _bound(self, role: str, host: str, port: int) -> socket.socket:
        sock = open_socket(self.topology.ns(role))
        sock.bind((host, port))
        sock.settimeout(0.05)
        return sock

    def punch(self) -> Endpoint:
        """The box punches; the edge's access socket sees the public mapping."""
        self.box.sendto(b"punch", (self.addr["edge_access"], ACCESS_PORT))
        self.access.settimeout(2)
        _data, source = self.access.recvfrom(2048)
        return Endpoint(source[0], source[1])

    def flow(self, public: Endpoint) -> LegFlow:
        """The leg between the media host's socket and ``public``."""
        return LegFlow(
            server=Endpoint(self.addr["media"], SERVER_PORT),
            core=Endpoint(self.addr["edge_core"], CORE_PORT),
            access=Endpoint(self.addr["edge_access"], ACCESS_PORT),
            public=public,
        )

    def server_to_box(self, seconds: float) -> tuple[int, tuple[str, int] | None]:
        """Stream from the media host to the core port; what the box got."""
        return _stream(
            self.server, (self.addr["edge_core"], CORE_PORT), self.box, seconds
        )

    def box_to_server(self, seconds: float) -> tuple[int, tuple[str, int] | None]:
        """Send box RTCP to the access port; what the media host got."""
        return _stream(
            self.box, (self.addr["edge_access"], ACCESS_PORT), self.server, seconds
        )

    def conntrack(self, *argv: str) -> str:
        """Run the conntrack tool in the edge (inspection only)."""
        return run_command(
            ["ip", "netns", "exec", self.topology.ns("edge"), "conntrack", *argv]
        )

    def close(self) -> None:
        """Close the sockets."""
        for sock in (self.access, self.core, self.box, self.server):
            sock.close()


def _stream(
    sender: socket.socket,
    destination: tuple[str, int],
    receiver: socket.socket,
    seconds: float,
) -> tuple[int, tuple[str, int] | None]:
    """Send a datagram every 10 ms for ``seconds``; count what arrives."""
    receiver.settimeout(0.01)
    received = 0
    source = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.sendto(b"\x80" + bytes(171), destination)
        try:
            while True:
                _data, source = receiver.recvfrom(2048)
                received += 1
        except TimeoutError:
            pass
    return received, source


@pytest.fixture
def edge() -> Iterator[Edge]:
    """A lab topology with a running KernelNat in its edge namespace."""
    topology = Topology.create()
    lab = None
    try:
        lab = Edge(topology)
        lab.pump.wait(lab.nat.start())
        yield lab
        lab.pump.wait(lab.nat.stop())
    finally:
        if lab is not None:
            lab.close()
        topology.destroy()


def test_media_reaches_latched_endpoint_and_rtcp_returns(edge: Edge) -> None:
    """Installed leg: server media reaches the box from the access port it
    punched to, and box RTCP reaches the server from the core port."""
    public = edge.punch()
    assert public.host == edge.addr["gateway_wan"]
    flow = edge.flow(public)
    edge.pump.wait(edge.nat.install(flow))

    received, source = edge.server_to_box(0.5)
    assert received > 20
    assert source == (edge.addr["edge_access"], ACCESS_PORT)
    received, source = edge.box_to_server(0.3)
    assert received > 10
    assert source == (edge.addr["edge_core"], CORE_PORT)

    counts = edge.pump.wait(edge.nat.remove(flow))
    assert counts.packets_to_box > 20
    assert counts.packets_to_server > 10
    assert counts.bytes_to_box == counts.packets_to_box * (172 + 28)


def test_remove_stops_kernel_forwarding_and_empties_the_maps(edge: Edge) -> None:
    """After removal, server media reaches the edge's own core socket again,
    no set holds an element and no conntrack entry of the leg is left."""
    flow = edge.flow(edge.punch())
    edge.pump.wait(edge.nat.install(flow))
    assert edge.server_to_box(0.3)[0] > 0

    edge.pump.wait(edge.nat.remove(flow))
    assert edge.server_to_box(0.3)[0] == 0
    edge.core.settimeout(1)
    assert edge.core.recv(2048)
    elements = edge.pump.wait(edge.nat.elements())
    assert elements == {"core": [], "access": []}
    listing = edge.conntrack("-L", "-p", "udp", "--orig-port-dst", str(ACCESS_PORT))
    assert str(flow.public.port) not in listing


def test_stale_entry_blocks_media_until_deleted(edge: Edge) -> None:
    """Media that reached the core port before the install keeps an
    un-NATed entry that hides the new element until it is deleted."""
    public = edge.punch()
    # The punch's own entry would clash too; take it out of the picture.
    edge.conntrack(
        "-D",
        "-p",
        "udp",
        "--orig-src",
        public.host,
        "--orig-port-src",
        str(public.port),
    )
    assert edge.server_to_box(0.3)[0] == 0  # delivered to the edge: stale

    flow = edge.flow(public)
    edge.pump.wait(edge.nat.install(flow, delete_conntrack=False))
    assert edge.server_to_box(1.5)[0] == 0

    edge.pump.wait(edge.nat.delete_conntrack(flow))
    assert edge.server_to_box(0.5)[0] > 20


def test_punch_clash_drops_media_until_deleted(edge: Edge) -> None:
    """The box's punch leaves an entry equal to the NATed reply tuple: media
    fails to insert (insert_failed) until the punch entry is deleted."""
    flow = edge.flow(edge.punch())
    edge.pump.wait(edge.nat.install(flow, delete_conntrack=False))
    before = _insert_failed(edge)
    assert edge.server_to_box(1.0)[0] == 0
    assert _insert_failed(edge) > before

    edge.pump.wait(edge.nat.delete_conntrack(flow))
    assert edge.server_to_box(0.5)[0] > 20


def _insert_failed(edge: Edge) -> int:
    stats = edge.conntrack("-S")
    return sum(int(n) for n in re.findall(r"insert_failed=(\d+)", stats))


def test_thousand_bindings_installed_and_removed_leave_sets_empty(edge: Edge) -> None:
    """1,000 two-leg bindings go in and out, coalesced, and leave no element."""
    flows = [_flow(index, leg) for index in range(1000) for leg in range(2)]
    installs = [edge.nat.install(flow) for flow in flows]
    for deferred in installs:
        edge.pump.wait(deferred)
    elements = edge.pump.wait(edge.nat.elements())
    assert [len(found) for found in elements.values()] == [2000, 2000]

    removals = [edge.nat.remove(flow) for flow in flows]
    for deferred in removals:
        assert edge.pump.wait(deferred) is None  # no traffic, no entry
    elements = edge.pump.wait(edge.nat.elements())
    assert elements == {"core": [], "access": []}


def _flow(index: int, leg: int) -> LegFlow:
    return LegFlow(
        server=Endpoint("203.0.113.10", 6000 + leg),
        core=Endpoint("203.0.113.1", 20000 + 2 * index + leg),
        access=Endpoint("198.51.100.1", 40000 + 2 * index + leg),
        public=Endpoint("198.51.100.2", 10000 + 2 * index + leg),
    )


def test_failed_install_fails_alone_and_leaves_nothing(edge: Edge) -> None:
    """A change the kernel refuses fails with its errno; the changes
    coalesced with it succeed and it leaves no element behind."""
    good = [_flow(index, 0) for index in range(3)]
    clash = attrs_evolve_public(good[1], Endpoint("198.51.100.2", 9))
    results = [edge.nat.install(good[0]), edge.nat.install(good[1])]
    edge.pump.wait(results[0])
    edge.pump.wait(results[1])

    # Same core key as good[1]: EEXIST, in one batch with good[2].
    refused = edge.nat.install(clash)
    accepted = edge.nat.install(good[2])
    with pytest.raises(Exception) as caught:
        edge.pump.wait(refused)
    assert getattr(caught.value, "errno", None) == 17
    assert getattr(caught.value, "status", None) == 503
    edge.pump.wait(accepted)
    elements = edge.pump.wait(edge.nat.elements())
    assert len(elements["core"]) == 3
    assert len(elements["access"]) == 3


def attrs_evolve_public(flow: LegFlow, public: Endpoint) -> LegFlow:
    """``flow`` latched to another public endpoint."""
    return LegFlow(flow.server, flow.core, flow.access, public)


CHILD = textwrap.dedent(
    """
    import sys, threading
    from hostednat.nat.binding import Endpoint
    from hostednat.nat.kernel_nat import KernelNat
    from hostednat.nat.nftables import LegFlow, NatTable

    class Direct:
        def callFromThread(self, function, *args):
            function(*args)

    netns, name, access, core, media, public, port = sys.argv[1:]
    nat = KernelNat(Direct(), NatTable(name, access, core), netns=netns)
    done = threading.Event()
    nat.start().addBoth(lambda _: done.set())
    done.wait(10)
    done.clear()
    flow = LegFlow(
        Endpoint(media, 6000), Endpoint(core, 31000),
        Endpoint(access, 30000), Endpoint(public, int(port)),
    )
    nat.install(flow).addBoth(lambda _: done.set())
    done.wait(10)
    print("installed", flush=True)
    threading.Event().wait()
    """
)


def test_restart_after_sigkill_removes_leftovers(edge: Edge) -> None:
    """A run killed with SIGKILL leaves elements and a NATed entry; the next
    start removes both before it creates the table again."""
    edge.pump.wait(edge.nat.stop())
    public = edge.punch()
    edge.conntrack(
        "-D",
        "-p",
        "udp",
        "--orig-src",
        public.host,
        "--orig-port-src",
        str(public.port),
    )
    argv = [
        sys.executable,
        "-c",
        CHILD,
        edge.topology.ns("edge"),
        edge.table.name,
        edge.addr["edge_access"],
        edge.addr["edge_core"],
        edge.addr["media"],
        public.host,
        str(public.port),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "installed"
        assert edge.server_to_box(0.3)[0] > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert edge.server_to_box(0.3)[0] > 0  # the kernel still forwards

    edge.nat = KernelNat(edge.pump, edge.table, netns=edge.topology.ns("edge"))
    reconciled = edge.pump.wait(edge.nat.start())
    assert reconciled == Reconciled(elements=2, conntrack_deleted=1)
    assert edge.server_to_box(0.3)[0] == 0
    elements = edge.pump.wait(edge.nat.elements())
    assert elements == {"core": [], "access": []}


class LabReactor(Clock):
    """A Clock for time, recording readers, and the edge's pump for threads."""

    def __init__(self, pump: ThreadPump) -> None:
        super().__init__()
        self.readers: list[Any] = []
        self.callFromThread = pump.callFromThread

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def test_table_latches_in_userspace_and_forwards_in_the_kernel(edge: Edge) -> None:
    """The box's punch latches through the access socket's guard; from then
    on media and RTCP cross the edge without reaching a Python socket."""
    reactor = LabReactor(edge.pump)
    table = KernelBindingTable(
        reactor,
        edge.nat,
        access_address=edge.addr["edge_access"],
        core_address=edge.addr["edge_core"],
        access_pool=PortPool(32000, 32099),
        core_pool=PortPool(33000, 33099),
        latch_window=30.0,
        relatch_after=10.0,
    )
    request = BindingRequest(edge.addr["gateway_wan"], PortPair(BOX_PORT, BOX_PORT + 1))
    binding = run_in_netns(edge.topology.ns("edge"), lambda: table.allocate(request))
    server = Endpoint(edge.addr["media"], SERVER_PORT)
    edge.pump.wait(table.install(binding, server, Endpoint(server.host, 6001)))

    access = (edge.addr["edge_access"], binding.access.rtp)
    core = (edge.addr["edge_core"], binding.core.rtp)
    reader, core_reader = [r for r in reactor.readers if r.state.leg is Leg.RTP]
    edge.box.sendto(b"punch", access)
    assert _readable(reader.sock, 2.0)
    reader.doRead()
    assert binding.latched[Leg.RTP].host == edge.addr["gateway_wan"]
    assert len(edge.pump.wait(edge.nat.elements())["core"]) == 1

    received, source = _stream(edge.server, core, edge.box, 0.5)
    assert received > 20
    assert source == access
    received, source = _stream(edge.box, access, edge.server, 0.3)
    assert received > 10
    assert source == core
    assert not _readable(reader.sock, 0) and not _readable(core_reader.sock, 0)

    edge.pump.wait(table.refresh_counters())
    counts = table.counters(binding)
    assert counts.packets_to_box > 20 and counts.packets_to_server > 10
    forwarded = table.forwarded_packets()
    # The punch latched and the leg went to the kernel: Python relayed nothing.
    assert forwarded.python == 0
    assert counts.latch_datagrams == 1
    assert forwarded.kernel == counts.packets_to_box + counts.packets_to_server

    edge.pump.wait(table.remove(binding))
    assert edge.pump.wait(edge.nat.elements())["core"] == []
