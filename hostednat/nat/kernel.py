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

Reconciliation.  The table is hostednat's alone.  At start the worker lists
the map elements a previous run left (after SIGKILL, say), deletes the
table, deletes those elements' conntrack entries by exact tuple (derived
from the elements: no conntrack dump), and creates the table anew.  At a
clean stop it deletes the table.

Not supported: IPv6, conntrack zones, and sharing the table with another
process (it is deleted at start).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from hostednat.nat.binding import BindingFailed, Endpoint
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

__all__ = [
    "EVENT_CONNTRACK_FAILED",
    "EVENT_RECONCILED",
    "FlowCounts",
    "KernelNat",
    "KernelNatError",
    "Reconciled",
]

#: ``hostednat_event`` when a conntrack delete failed other than ENOENT.
EVENT_CONNTRACK_FAILED = "kernel.conntrack_failed"
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
