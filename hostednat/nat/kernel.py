"""The kernel data plane: nftables maps and conntrack, driven over netlink.

Theory of operation.  :class:`KernelNat` owns hostednat's nftables table
(layout in :mod:`hostednat.nat.nftables`) and one worker thread, the only
place that talks netlink: nothing here blocks the reactor.  Requests are
queued; the worker takes every queued element change at once (up to
``max_batch``) and commits them as one nftables transaction, which is how a
Python process reaches thousands of bindings per second.  A transaction is
all or nothing, so when a coalesced one fails the worker retries each change
in a transaction of its own: a failure then fails only the change that
caused it, with its errno, and leaves none of its elements behind.  After
the commit it deletes the conntrack entries of the changed legs by exact
tuple (:mod:`hostednat.nat.conntrack`), several per send.

Why maps and not conntrack entries created over ctnetlink: a NAT entry made
with IPCTNL_MSG_CT_NEW expires with its timeout and is gone after a
flush or a box that goes quiet for a while, so hostednat would have to
recreate it from a timer; an expectation needs a helper-owned master
connection.  A map element lasts exactly as long as the binding, costs one
element per direction and survives conntrack churn: the kernel recreates the
NATed entry from it whenever a new one is needed.

:class:`KernelBindingTable` is the :class:`~hostednat.nat.binding.BindingTable`
for ``[nat] backend = "kernel"``: it is the userspace table (its sockets
still receive the box's punches, its guards still latch) whose latches also
go into the kernel, after which no media packet of the leg reaches Python.
Counters are read from the kernel every couple of seconds; a read that shows
box packets also tells the leg's guard that the latched endpoint is alive.

Reconciliation.  The table is hostednat's alone.  At start the worker lists
the map elements a previous run left (after SIGKILL, say), deletes the
table, deletes those elements' conntrack entries by exact tuple (derived
from the elements: no conntrack dump), and creates the table anew.  At a
clean stop it deletes the table.

Not supported: IPv6, conntrack zones, sharing the table with another
process (it is deleted at start), and a counter that survives a failed
read: per-packet counting costs about 8% of the forwarding rate (see
``benchmarks/kernel_bindings.py``).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat.config import NatConfig
from hostednat.nat.binding import (
    Binding,
    BindingCounters,
    BindingFailed,
    Endpoint,
    Leg,
)
from hostednat.nat.conntrack import FlowTuple, delete_message
from hostednat.nat.netlink import NetlinkChannel, Reply, errno_name
from hostednat.nat.nftables import (
    ACCESS_MAP,
    CORE_MAP,
    COUNTER_SET,
    BatchWriter,
    DumpedElement,
    Element,
    LegFlow,
    NatTable,
    add_elements,
    counter_endpoint,
    create_table,
    decode_elements,
    delete_elements,
    delete_table,
    get_elements_message,
    tuple_from_access_element,
    tuple_from_core_element,
)
from hostednat.nat.ports import PortPool
from hostednat.nat.userspace import UserspaceBindingTable

__all__ = [
    "EVENT_KERNEL_FAILED",
    "EVENT_RECONCILED",
    "FlowCounts",
    "ForwardedPackets",
    "KernelBackendUnavailable",
    "KernelBindingTable",
    "KernelNat",
    "KernelNatError",
    "Reconciled",
    "build_kernel_table",
    "check_capability",
]

#: ``hostednat_event`` when leftovers of a previous run were removed.
EVENT_RECONCILED = "kernel.reconciled"

_ENOENT = 2
_ETIMEDOUT = 110

# Element changes per transaction.  About 250 was where the lab's per-batch
# gain flattened out (lab notes: 2,800-5,300 bindings/s at 250 per batch).
_MAX_BATCH = 256

# Conntrack deletes per send(): each answer is a 36-byte acknowledgement,
# so 512 of them fit the socket's receive buffer many times over.
_CONNTRACK_CHUNK = 512

_SETS = (CORE_MAP, ACCESS_MAP, COUNTER_SET)

_T = TypeVar("_T")


class KernelNatError(BindingFailed):
    """The kernel refused a netlink request; ``errno`` says why."""

    def __init__(self, operation: str, code: int) -> None:
        super().__init__(f"{operation}: {errno_name(code)} ({os.strerror(code)})")
        self.operation = operation
        self.errno = code


class ThreadCallbacks(Protocol):
    """What :class:`KernelNat` needs from a reactor (``IReactorFromThreads``)."""

    def callFromThread(
        self, callable: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Run ``callable`` on the reactor thread."""


@attrs.frozen
class FlowCounts:
    """Kernel counts of one leg, in each direction."""

    packets_to_box: int = 0
    bytes_to_box: int = 0
    packets_to_server: int = 0
    bytes_to_server: int = 0


@attrs.frozen
class Reconciled:
    """What start removed from a previous run."""

    elements: int
    conntrack_deleted: int


@attrs.define(eq=False)
class _Change:
    """Element changes of one request, and what to do around them."""

    deletes: list[tuple[str, Element]]
    adds: list[tuple[str, Element]]
    conntrack: list[FlowTuple]
    deferred: Deferred[Any]
    operation: str
    read_counts: LegFlow | None = None
    counts: FlowCounts | None = None
    error: int = 0

    def keys(self) -> set[tuple[str, bytes]]:
        return {(name, e.key) for name, e in [*self.deletes, *self.adds]}


@attrs.define(eq=False)
class _Call:
    """Any other request: a function of the channel, run alone."""

    function: Callable[[NetlinkChannel], Any]
    deferred: Deferred[Any]


_STOP = object()


class KernelNat:
    """hostednat's nftables table and the thread that changes it.

    :param reactor: where results are delivered (``callFromThread``).
    :param table: the table name and the edge addresses.
    :param netns: name of a network namespace (``ip netns`` style) to work
        in; ``None`` for the process's own.
    :param max_batch: element changes coalesced into one transaction.
    :param timeout: seconds to wait for each kernel answer.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: ThreadCallbacks,
        table: NatTable,
        *,
        netns: str | None = None,
        max_batch: int = _MAX_BATCH,
        timeout: float = 5.0,
    ) -> None:
        self._reactor = reactor
        self.table = table
        self._netns = netns
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._channel: NetlinkChannel | None = None

    # Requests, from the reactor thread.

    def start(self) -> Deferred[Reconciled]:
        """Start the thread, clear leftovers and create the table.

        :raises KernelNatError: (in the Deferred) the kernel refused, for
            example EPERM without CAP_NET_ADMIN.
        """
        self._thread = threading.Thread(
            target=self._run, name=f"hostednat-netlink-{self.table.name}", daemon=True
        )
        self._thread.start()
        return self._call(self._reconcile_and_create)

    def install(
        self, flow: LegFlow, *, delete_conntrack: bool = True
    ) -> Deferred[None]:
        """Forward ``flow`` in the kernel from now on.

        :param delete_conntrack: delete the leg's stale and punch entries
            right after the elements are in.  ``False`` leaves them, which
            shows what they break (tests, benchmarks).
        """
        conntrack = list(flow.conntrack_tuples()) if delete_conntrack else []
        change = _Change(
            [], flow.all_elements(), conntrack, Deferred(), f"install {flow.access}"
        )
        return self._change(change)

    def delete_conntrack(self, flow: LegFlow) -> Deferred[int]:
        """Delete ``flow``'s two tuples; the result is how many existed."""
        return self._call(
            lambda channel: self._delete_tuples(channel, flow.conntrack_tuples())
        )

    def relatch(self, old: LegFlow, new: LegFlow) -> Deferred[None]:
        """Move a leg from ``old``'s public endpoint to ``new``'s."""
        conntrack = list(
            dict.fromkeys([*old.conntrack_tuples(), *new.conntrack_tuples()])
        )
        return self._change(
            _Change(
                old.map_elements(),
                new.map_elements(),
                conntrack,
                Deferred(),
                f"relatch {new.access}",
            )
        )

    def remove(self, flow: LegFlow, *, read_counts: bool = True) -> Deferred[Any]:
        """Stop forwarding ``flow``.

        :param read_counts: read the leg's counters just before their
            elements go, and give them as the result (a :class:`FlowCounts`);
            it costs one kernel answer per counter.  Otherwise the result is
            ``None``.
        """
        change = _Change(
            flow.all_elements(),
            [],
            [flow.box_tuple()],
            Deferred(),
            f"remove {flow.access}",
            read_counts=flow if read_counts else None,
        )
        return self._change(change)

    def counters(self) -> Deferred[dict[Endpoint, tuple[int, int]]]:
        """Packets and bytes of every ``counters`` element, by endpoint."""
        return self._call(self._dump_counters)

    def elements(self) -> Deferred[dict[str, list[DumpedElement]]]:
        """Every element of the table's three sets, by set name."""
        return self._call(self._dump_all)

    def stop(self) -> Deferred[None]:
        """Delete the table, close the socket and end the thread."""
        d = self._call(self._delete_table)
        self._queue.put(_STOP)
        return d

    def _change(self, change: _Change) -> Deferred[Any]:
        self._queue.put(change)
        return change.deferred

    def _call(self, function: Callable[[NetlinkChannel], _T]) -> Deferred[_T]:
        call = _Call(function, Deferred())
        self._queue.put(call)
        return call.deferred

    # The worker thread.

    def _run(self) -> None:
        carry: object | None = None
        try:
            self._open()
        except Exception as error:
            carry = error
        while True:
            item = carry if carry is not None else self._queue.get()
            carry = None
            if item is _STOP:
                break
            if isinstance(item, BaseException):
                self._fail_everything(item)
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            assert isinstance(item, _Change)
            group, carry = self._gather(item)
            try:
                self._apply(group)
            except Exception as error:
                # The thread's boundary: answer, log, and keep serving.
                self._log.failure("Netlink worker failed")
                for change in group:
                    self._deliver(change.deferred, error)
        if self._channel is not None:
            self._channel.close()

    def _open(self) -> None:
        if self._netns is not None:
            from pyroute2 import netns

            netns.setns(self._netns, flags=0)
        self._channel = NetlinkChannel(self._timeout)

    def _fail_everything(self, error: BaseException) -> None:
        """Setup failed: answer every request with ``error`` until stopped."""
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Call | _Change):
                self._deliver(item.deferred, error)

    def _gather(self, first: _Change) -> tuple[list[_Change], object | None]:
        """``first`` and the queued changes after it that can share its
        transaction: no element touched twice."""
        group = [first]
        touched = first.keys()
        while len(group) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return group, None
            if not isinstance(item, _Change) or touched & item.keys():
                return group, item
            touched |= item.keys()
            group.append(item)
        return group, None

    def _run_call(self, call: _Call) -> None:
        channel = self._channel
        assert channel is not None
        try:
            result = call.function(channel)
        except Exception as error:
            self._deliver(call.deferred, error)
            return
        self._deliver(call.deferred, result)

    def _apply(self, group: list[_Change]) -> None:
        channel = self._channel
        assert channel is not None
        try:
            self._read_final_counts(channel, group)
            if self._commit(channel, group) and len(group) > 1:
                for change in group:
                    self._commit(channel, [change])
            self._delete_conntrack(channel, group)
        except (OSError, TimeoutError) as error:
            code = getattr(error, "errno", None) or _ETIMEDOUT
            for change in group:
                change.error = change.error or code
        for change in group:
            if change.error:
                failure = KernelNatError(change.operation, change.error)
                self._deliver(change.deferred, failure)
            else:
                self._deliver(change.deferred, change.counts)

    def _commit(self, channel: NetlinkChannel, group: list[_Change]) -> int:
        """One transaction for ``group``; its errno (marked on every change
        when alone), or 0."""
        table = self.table.name
        writer = BatchWriter(channel.next_seq)
        for name in _SETS:
            deletes = [e for change in group for n, e in change.deletes if n == name]
            if deletes:
                delete_elements(writer, table, name, deletes)
        for name in _SETS:
            adds = [e for change in group for n, e in change.adds if n == name]
            if adds:
                add_elements(writer, table, name, adds)
        if not len(writer):
            return 0
        batch = writer.finish()
        replies = channel.exchange(batch.data, batch.requests, [batch.begin])
        code = _first_error(replies.values())
        if code and len(group) == 1:
            group[0].error = code
        return code

    def _read_final_counts(self, channel: NetlinkChannel, group: list[_Change]) -> None:
        leaving = [change for change in group if change.read_counts is not None]
        if not leaving:
            return
        wanted = []
        for change in leaving:
            assert change.read_counts is not None
            wanted += [e.key for e in change.read_counts.counter_elements()]
        seq = channel.next_seq()
        message = get_elements_message(seq, self.table.name, COUNTER_SET, wanted)
        reply = channel.exchange(message, [seq])[seq]
        if reply.error:
            # A key is missing (never installed): fall back to the whole set.
            counts = self._dump_counters(channel)
        else:
            counts = _counts_by_endpoint(reply.messages)
        for change in leaving:
            flow = change.read_counts
            assert flow is not None
            box = counts.get(flow.access, (0, 0))
            server = counts.get(flow.core, (0, 0))
            change.counts = FlowCounts(*box, *server)

    def _delete_conntrack(self, channel: NetlinkChannel, group: list[_Change]) -> None:
        """Delete the entries of every change that committed; a failure
        other than ENOENT fails the change (its elements stay in)."""
        owned = [
            (change, flow)
            for change in group
            if not change.error
            for flow in change.conntrack
        ]
        for start in range(0, len(owned), _CONNTRACK_CHUNK):
            chunk = owned[start : start + _CONNTRACK_CHUNK]
            replies, owners = self._send_deletes(channel, chunk)
            for seq, reply in replies.items():
                if reply.error and reply.error != _ENOENT:
                    owners[seq].error = reply.error

    def _send_deletes(
        self, channel: NetlinkChannel, chunk: list[tuple[_Change, FlowTuple]]
    ) -> tuple[dict[int, Reply], dict[int, _Change]]:
        """One send of deletes; only the last asks for an acknowledgement."""
        owners: dict[int, _Change] = {}
        messages = []
        for index, (change, flow) in enumerate(chunk):
            seq = channel.next_seq()
            owners[seq] = change
            last = index == len(chunk) - 1
            messages.append(delete_message(seq, flow, ack=last))
        return channel.exchange(b"".join(messages), [seq]), owners

    # Whole-table work, run alone on the thread.

    def _dump_set(self, channel: NetlinkChannel, name: str) -> list[DumpedElement]:
        seq = channel.next_seq()
        reply = channel.exchange(
            get_elements_message(seq, self.table.name, name), [seq]
        )
        if reply[seq].error:
            raise KernelNatError(f"list {name}", reply[seq].error)
        return [found for m in reply[seq].messages for found in decode_elements(m)]

    def _dump_counters(
        self, channel: NetlinkChannel
    ) -> dict[Endpoint, tuple[int, int]]:
        seq = channel.next_seq()
        message = get_elements_message(seq, self.table.name, COUNTER_SET)
        reply = channel.exchange(message, [seq])[seq]
        if reply.error:
            raise KernelNatError("read counters", reply.error)
        return _counts_by_endpoint(reply.messages)

    def _dump_all(self, channel: NetlinkChannel) -> dict[str, list[DumpedElement]]:
        return {name: self._dump_set(channel, name) for name in _SETS}

    def _reconcile_and_create(self, channel: NetlinkChannel) -> Reconciled:
        try:
            core = self._dump_set(channel, CORE_MAP)
            access = self._dump_set(channel, ACCESS_MAP)
        except KernelNatError as error:
            if error.errno != _ENOENT:
                raise
            core, access = [], []
        else:
            self._delete_table(channel)
        flows = [tuple_from_core_element(found.element) for found in core]
        flows += [tuple_from_access_element(found.element) for found in access]
        deleted = self._delete_tuples(channel, flows)

        writer = BatchWriter(channel.next_seq)
        create_table(writer, self.table)
        batch = writer.finish()
        code = _first_error(
            channel.exchange(batch.data, batch.requests, [batch.begin]).values()
        )
        if code:
            raise KernelNatError(f"create table {self.table.name}", code)
        result = Reconciled(len(core) + len(access), deleted)
        if result.elements:
            self._log.info(
                "Removed {elements} leftover elements and {conntrack_deleted}"
                " conntrack entries from table {table}",
                hostednat_event=EVENT_RECONCILED,
                elements=result.elements,
                conntrack_deleted=result.conntrack_deleted,
                table=self.table.name,
            )
        return result

    def _delete_tuples(
        self, channel: NetlinkChannel, flows: Iterable[FlowTuple]
    ) -> int:
        """Delete ``flows`` by exact tuple; how many entries existed."""
        unique = list(dict.fromkeys(flows))
        deleted = 0
        for start in range(0, len(unique), _CONNTRACK_CHUNK):
            chunk = unique[start : start + _CONNTRACK_CHUNK]
            seqs = [channel.next_seq() for _flow in chunk]
            data = b"".join(
                delete_message(seq, flow, ack=True)
                for seq, flow in zip(seqs, chunk, strict=True)
            )
            replies = channel.exchange(data, seqs)
            deleted += sum(1 for reply in replies.values() if not reply.error)
        return deleted

    def _delete_table(self, channel: NetlinkChannel) -> None:
        writer = BatchWriter(channel.next_seq)
        delete_table(writer, self.table.name)
        batch = writer.finish()
        code = _first_error(
            channel.exchange(batch.data, batch.requests, [batch.begin]).values()
        )
        if code and code != _ENOENT:
            raise KernelNatError(f"delete table {self.table.name}", code)

    def _deliver(self, deferred: Deferred[Any], result: object) -> None:
        if isinstance(result, BaseException):
            self._reactor.callFromThread(deferred.errback, result)
        else:
            self._reactor.callFromThread(deferred.callback, result)


def _first_error(replies: Iterable[Reply]) -> int:
    return next((reply.error for reply in replies if reply.error), 0)


def _counts_by_endpoint(messages: Iterable[bytes]) -> dict[Endpoint, tuple[int, int]]:
    return {
        counter_endpoint(found.element): (found.packets, found.bytes)
        for message in messages
        for found in decode_elements(message)
    }


# The binding table: latch in userspace, forward in the kernel.

#: ``hostednat_event`` when the kernel refused a leg; it stays in userspace.
EVENT_KERNEL_FAILED = "kernel.binding_failed"

# /proc/self/status CapEff bit (include/uapi/linux/capability.h).
_CAP_NET_ADMIN = 12

# Seconds between counter reads: well under the 10 s relatch silence
# (reference 7.2 rule 3b), since the reads also feed the latch guards.
_COUNTER_INTERVAL = 2.0


class KernelBackendUnavailable(RuntimeError):
    """The kernel backend cannot run in this process."""


def check_capability(status: str | None = None) -> None:
    """Refuse to start the kernel backend without CAP_NET_ADMIN.

    :param status: the text of ``/proc/self/status`` (read when ``None``).
    :raises KernelBackendUnavailable: the effective set lacks CAP_NET_ADMIN.
    """
    if status is None:
        with open("/proc/self/status", encoding="ascii") as lines:
            status = lines.read()
    effective = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")),
        "0",
    )
    if not int(effective, 16) >> _CAP_NET_ADMIN & 1:
        raise KernelBackendUnavailable(
            '[nat] backend = "kernel" needs CAP_NET_ADMIN to change nftables and'
            " conntrack: run hostednat as root, grant the capability (systemd:"
            ' AmbientCapabilities=CAP_NET_ADMIN), or set backend = "userspace"'
        )


@attrs.frozen
class ForwardedPackets:
    """Packets forwarded by the kernel and by Python, both directions."""

    kernel: int
    python: int


class KernelNatLike(Protocol):
    """The part of :class:`KernelNat` the table uses (tests fake it)."""

    def start(self) -> Deferred[Reconciled]:
        """Clear leftovers and create the table."""

    def install(self, flow: LegFlow) -> Deferred[None]:
        """Forward ``flow`` in the kernel."""

    def relatch(self, old: LegFlow, new: LegFlow) -> Deferred[None]:
        """Move a leg to a new public endpoint."""

    def remove(self, flow: LegFlow) -> Deferred[Any]:
        """Stop forwarding ``flow``; its final :class:`FlowCounts`."""

    def counters(self) -> Deferred[dict[Endpoint, tuple[int, int]]]:
        """Every counter, by endpoint."""

    def stop(self) -> Deferred[None]:
        """Delete the table."""


class KernelBindingTable(UserspaceBindingTable):
    """A binding table that latches in userspace and forwards in the kernel.

    Allocation, the access-side sockets and the latching guards are the
    userspace table's: the box's punches reach the access socket and its
    :class:`~hostednat.nat.latch.LatchGuard` as before.  Once a leg has both
    a latched endpoint and the server's endpoint, its flow goes into the
    kernel; from then on its media never reaches Python.  While the kernel
    has not (yet) taken a leg, or if it refused it, the userspace relay
    forwards it.

    :param nat: the kernel's side (a started or startable :class:`KernelNat`).
    :param counter_interval: seconds between counter reads; each read also
        tells a leg's guard that its latched endpoint is alive when box
        packets went through the kernel, so that a silent-mapping relatch
        (reference 7.2 rule 3b) does not fire on a leg whose box still talks.
    :param table_options: the :class:`UserspaceBindingTable` keywords.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        nat: KernelNatLike,
        *,
        counter_interval: float = _COUNTER_INTERVAL,
        **table_options: Any,
    ) -> None:
        super().__init__(reactor, **table_options)
        self._nat = nat
        self._counter_interval = counter_interval
        self._flows: dict[tuple[Binding, Leg], LegFlow] = {}
        self._explicit: list[Deferred[None]] | None = None
        self._kernel_counts: dict[tuple[Binding, Leg], FlowCounts] = {}
        self._kernel_retired = BindingCounters()
        self._removing: set[Binding] = set()
        self._poll: LoopingCall | None = None

    def start(self) -> Deferred[Reconciled]:
        """Reconcile and create the table, then read counters periodically.

        Call it, and wait for it, before accepting connections.
        """
        started = self._nat.start()

        def poll(reconciled: Reconciled) -> Reconciled:
            self._poll = LoopingCall(self.refresh_counters)
            self._poll.clock = self.reactor  # type: ignore[assignment]
            self._poll.start(self._counter_interval, now=False)
            return reconciled

        started.addCallback(poll)
        return started

    def install(
        self, binding: Binding, server_rtp: Endpoint, server_rtcp: Endpoint | None
    ) -> Deferred[None]:
        """Record the server's endpoints; legs already latched go in now."""
        recorded = super().install(binding, server_rtp, server_rtcp)
        legs = [leg for leg in binding.access.legs() if leg in binding.latched]
        return _all([recorded, *(self._sync(binding, leg) for leg in legs)])

    def latch(self, binding: Binding, leg: Leg, source: Endpoint) -> Deferred[None]:
        """Latch ``leg`` to ``source``; fires once the kernel has it.

        :raises KernelNatError: (in the Deferred) the kernel refused the leg,
            which stays with the userspace relay.
        """
        self._explicit = []
        try:
            latched = super().latch(binding, leg, source)
            synced = self._explicit
        finally:
            self._explicit = None
        return _all([latched, *synced])

    def _record_latch(self, leg_state: Any, source: Endpoint) -> None:
        # The userspace table calls this for every latch, from its guard or
        # from latch(): the kernel follows.  A guard's latch has nobody to
        # report to; the failure is logged where it happens.
        super()._record_latch(leg_state, source)
        synced = self._sync(leg_state.binding, leg_state.leg)
        if self._explicit is not None:
            self._explicit.append(synced)
        else:
            synced.addErrback(lambda _: None)

    def _sync(self, binding: Binding, leg: Leg) -> Deferred[None]:
        """Bring the kernel in line with the leg's latched and server ends."""
        key = (binding, leg)
        server, public = binding.server.get(leg), binding.latched.get(leg)
        port_pair = (binding.access.port(leg), binding.core.port(leg))
        if binding in self._removing or server is None or public is None:
            return _done()
        access, core = port_pair
        assert access is not None and core is not None
        new = LegFlow(
            server,
            Endpoint(binding.core_address, core),
            Endpoint(binding.access_address, access),
            public,
        )
        old = self._flows.get(key)
        if old == new:
            return _done()

        self._flows[key] = new
        changed = self._nat.install(new) if old is None else self._nat.relatch(old, new)

        def refused(failure: Failure) -> Failure:
            # A failed transaction changed nothing: the old state stands.
            if self._flows.get(key) == new:
                if old is None:
                    self._flows.pop(key, None)
                else:
                    self._flows[key] = old
            self._log.error(
                "Kernel refused binding {binding} {leg}: {error};"
                " it stays in userspace",
                hostednat_event=EVENT_KERNEL_FAILED,
                binding=binding.binding_id,
                leg=leg.value,
                error=failure.getErrorMessage(),
                errno=getattr(failure.value, "errno", None),
            )
            return failure

        return changed.addErrback(refused)

    def remove(self, binding: Binding) -> Deferred[None]:
        """Take the binding's legs out of the kernel, then release it."""
        if binding in self._removing:
            return _done()
        self._removing.add(binding)
        removals = []
        for leg in binding.access.legs():
            flow = self._flows.pop((binding, leg), None)
            self._kernel_counts.pop((binding, leg), None)
            if flow is not None:
                removals.append(self._nat.remove(flow))

        def retire(result: object) -> Deferred[None]:
            counts = result if isinstance(result, FlowCounts) else None
            if counts is not None:
                self._kernel_retired.add(_as_counters(counts))
            return _done()

        def release(_: object) -> Deferred[None]:
            self._removing.discard(binding)
            return super(KernelBindingTable, self).remove(binding)

        for removal in removals:
            removal.addCallback(retire)
            removal.addErrback(self._removal_failed, binding)
        return _all(removals).addCallback(release)

    def _removal_failed(self, failure: Failure, binding: Binding) -> None:
        self._log.error(
            "Kernel removal of binding {binding} failed: {error}",
            hostednat_event=EVENT_KERNEL_FAILED,
            binding=binding.binding_id,
            error=failure.getErrorMessage(),
            errno=getattr(failure.value, "errno", None),
        )

    def counters(self, binding: Binding) -> BindingCounters:
        """Userspace counts plus the kernel's, as of the last read."""
        total = super().counters(binding)
        for leg in binding.access.legs():
            counts = self._kernel_counts.get((binding, leg))
            if counts is not None:
                total.add(_as_counters(counts))
        return total

    def totals(self) -> BindingCounters:
        """Counts over every binding, userspace and kernel."""
        total = super().totals()
        total.add(self._kernel_totals())
        return total

    def forwarded_packets(self) -> ForwardedPackets:
        """Packets the kernel forwarded, against those Python relayed."""
        python = super().totals()
        kernel = self._kernel_totals()
        return ForwardedPackets(
            kernel=kernel.packets_to_box + kernel.packets_to_server,
            python=python.packets_to_box + python.packets_to_server,
        )

    def _kernel_totals(self) -> BindingCounters:
        total = attrs.evolve(self._kernel_retired)
        for counts in self._kernel_counts.values():
            total.add(_as_counters(counts))
        return total

    def refresh_counters(self) -> Deferred[None]:
        """Read every counter from the kernel into the per-leg cache."""
        reading = self._nat.counters()
        counted = reading.addCallback(self._counted)
        return counted.addErrback(self._counting_failed)

    def _counted(self, counts: dict[Endpoint, tuple[int, int]]) -> None:
        now = self.reactor.seconds()
        for key, flow in self._flows.items():
            to_box = counts.get(flow.access, (0, 0))
            to_server = counts.get(flow.core, (0, 0))
            fresh = FlowCounts(*to_box, *to_server)
            previous = self._kernel_counts.get(key, FlowCounts())
            self._kernel_counts[key] = fresh
            if fresh.packets_to_server > previous.packets_to_server:
                self._box_alive(key, flow.public, now)

    def _box_alive(
        self, key: tuple[Binding, Leg], public: Endpoint, now: float
    ) -> None:
        """The latched endpoint sent through the kernel since the last read."""
        state = self._bindings.get(key[0])
        if state is not None and key[1] in state.legs:
            state.legs[key[1]].guard.offer(public, now)

    def _counting_failed(self, failure: Failure) -> None:
        self._log.error(
            "Reading kernel counters failed: {error}",
            hostednat_event=EVENT_KERNEL_FAILED,
            error=failure.getErrorMessage(),
        )

    def close(self) -> Deferred[None]:
        """Remove every binding, stop reading counters, delete the table."""
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        removals = [self.remove(binding) for binding in list(self._bindings)]
        closing = _all(removals)
        closing.addCallback(lambda _: self._nat.stop())
        return closing


def build_kernel_table(
    reactor: Any, config: NatConfig, *, netns: str | None = None, **options: Any
) -> KernelBindingTable:
    """A kernel table for ``[nat]``; call :meth:`KernelBindingTable.start`.

    :param options: more :class:`KernelBindingTable` keywords (``observer``).
    :raises KernelBackendUnavailable: without CAP_NET_ADMIN.
    """
    check_capability()
    nat = KernelNat(
        reactor,
        NatTable(config.table, config.access_address, config.core_address),
        netns=netns,
    )
    return KernelBindingTable(
        reactor,
        nat,
        access_address=config.access_address,
        core_address=config.core_address,
        access_pool=PortPool(config.access_ports.first, config.access_ports.last),
        core_pool=PortPool(config.core_ports.first, config.core_ports.last),
        latch_window=config.latch_window,
        relatch_after=config.relatch_after,
        receive_buffer=config.receive_buffer,
        **options,
    )


def _as_counters(counts: FlowCounts) -> BindingCounters:
    return BindingCounters(
        packets_to_box=counts.packets_to_box,
        bytes_to_box=counts.bytes_to_box,
        packets_to_server=counts.packets_to_server,
        bytes_to_server=counts.bytes_to_server,
    )


def _done() -> Deferred[None]:
    return succeed(None)


def _all(deferreds: list[Deferred[Any]]) -> Deferred[None]:
    """Fires with None when all have; fails with the first failure."""
    if not deferreds:
        return _done()
    gathered: Deferred[Any] = gatherResults(deferreds, consumeErrors=True)
    gathered.addErrback(_first_failure)
    return gathered.addCallback(lambda _: None)


def _first_failure(failure: Failure) -> Failure:
    error = failure.value
    if isinstance(error, FirstError):
        sub: Failure = error.subFailure
        return sub
    return failure
