"""The kernel's side of the kernel backend: nftables maps and conntrack.

Theory of operation.  :class:`KernelNat` owns hostednat's nftables table
(layout in :mod:`hostednat.nat.nftables`) and one worker thread, the only
place that talks netlink: nothing here blocks the reactor.  Requests are
queued; the worker takes every queued element change at once (up to
``max_batch``) and commits them as one nftables transaction, which is how a
Python process reaches thousands of bindings per second.  A transaction is
all or nothing, so when a coalesced one fails the worker retries each change
in a transaction of its own: a failure then fails only the change that
caused it, with its errno, and leaves none of its elements behind.  After
the commit it reads and deletes the conntrack entries of the changed legs
by exact tuple (:mod:`hostednat.nat.conntrack`), hundreds per send.

Why maps and not conntrack entries created over ctnetlink: a NAT entry made
with IPCTNL_MSG_CT_NEW expires with its timeout and is gone after a
flush or a box that goes quiet for a while, so hostednat would have to
recreate it from a timer; an expectation needs a helper-owned master
connection.  A map element lasts exactly as long as the binding, costs one
element per direction and survives conntrack churn: the kernel recreates the
NATed entry from it whenever a new one is needed.

Counting.  A leg's packets are counted by conntrack accounting in the leg's
NATed entry, read with one exact-tuple get per leg (:meth:`KernelNat.read`)
and once more just before the entry is deleted (removal, relatch), so that
a leg's final count is exact.  The table turns accounting on when it is
created (see :mod:`hostednat.nat.nftables`).  A removal first reads the
entry and then deletes it only if the read found one: a leg that never
carried media costs one message at removal, not two.

Reconciliation.  The table is hostednat's alone.  At start the worker lists
the map elements a previous run left (after SIGKILL, say), deletes the
table, deletes those elements' conntrack entries by exact tuple (derived
from the elements: no conntrack dump), and creates the table anew.  At a
clean stop it deletes the table.

Not supported: IPv6, conntrack zones, sharing the table with another
process (it is deleted at start), and counts of an entry that something
else deleted or replaced between two reads (``conntrack -F``, say).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from hostednat.nat.binding import BindingFailed
from hostednat.nat.conntrack import (
    FlowTuple,
    decode_entry,
    delete_message,
    get_message,
)
from hostednat.nat.netlink import NetlinkChannel, Reply, errno_name
from hostednat.nat.nftables import (
    ACCESS_MAP,
    CORE_MAP,
    MAPS,
    BatchWriter,
    Element,
    LegFlow,
    NatTable,
    add_elements,
    create_table,
    decode_elements,
    delete_elements,
    delete_table,
    get_elements_message,
    tuple_from_access_element,
    tuple_from_core_element,
)

__all__ = [
    "FlowCounts",
    "KernelNat",
    "KernelNatError",
    "Reconciled",
    "ThreadCallbacks",
    "flow_counts",
]

_ENOENT = 2
_ETIMEDOUT = 110

# Element changes per transaction.  About 250 was where the lab's per-batch
# gain flattened out (lab notes: 2,800-5,300 bindings/s at 250 per batch).
_MAX_BATCH = 256

# Conntrack messages per send(): an answer with an entry and its counters
# is about 300 bytes, an error 36; 512 of either fit the 8 MiB receive
# buffer of the channel many times over.
_CONNTRACK_CHUNK = 512

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

    def __add__(self, other: FlowCounts) -> FlowCounts:
        return FlowCounts(
            self.packets_to_box + other.packets_to_box,
            self.bytes_to_box + other.bytes_to_box,
            self.packets_to_server + other.packets_to_server,
            self.bytes_to_server + other.bytes_to_server,
        )

    @property
    def packets(self) -> int:
        """Packets in both directions."""
        return self.packets_to_box + self.packets_to_server


def flow_counts(flow: LegFlow, payload: bytes) -> FlowCounts:
    """A leg's counts from its conntrack entry, as a get answered it.

    Which direction is which depends on who sent first: the entry's
    original direction is towards the box unless the box sent first.
    """
    entry = decode_entry(payload)
    original = (entry.original_packets, entry.original_bytes)
    reply = (entry.reply_packets, entry.reply_bytes)
    to_box, to_server = original, reply
    if entry.original.source == flow.public:
        to_box, to_server = reply, original
    return FlowCounts(*to_box, *to_server)


@attrs.frozen
class Reconciled:
    """What start removed from a previous run."""

    elements: int
    conntrack_deleted: int


@attrs.define(eq=False)
class _Change:
    """Element changes of one request, and the conntrack work after them.

    ``counted`` is a leg whose entry is read once the commit is in, before
    any of ``conntrack`` is deleted; with ``delete_counted`` its entry is
    deleted afterwards when the read found one.
    """

    deletes: list[tuple[str, Element]]
    adds: list[tuple[str, Element]]
    conntrack: list[FlowTuple]
    deferred: Deferred[Any]
    operation: str
    counted: LegFlow | None = None
    delete_counted: bool = False
    counts: FlowCounts | None = None
    error: int = 0

    def keys(self) -> set[tuple[str, bytes]]:
        return {(name, e.key) for name, e in [*self.deletes, *self.adds]}


@attrs.define(eq=False)
class _Call:
    """Any other request: a function of the channel, run alone."""

    function: Callable[[NetlinkChannel], Any]
    deferred: Deferred[Any]


@attrs.frozen
class _Op:
    """One conntrack message: a get (``read``) or a delete of ``flow``."""

    flow: FlowTuple
    read: bool


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
            [], flow.map_elements(), conntrack, Deferred(), f"install {flow.access}"
        )
        return self._change(change)

    def delete_conntrack(self, flow: LegFlow) -> Deferred[int]:
        """Delete ``flow``'s two tuples; the result is how many existed."""
        return self._call(
            lambda channel: self._delete_tuples(channel, flow.conntrack_tuples())
        )

    def relatch(self, old: LegFlow, new: LegFlow) -> Deferred[FlowCounts | None]:
        """Move a leg from ``old``'s public endpoint to ``new``'s.

        The result is the final count of ``old``'s entry, read just before
        it is deleted; ``None`` when it had none.
        """
        conntrack = list(
            dict.fromkeys([*old.conntrack_tuples(), *new.conntrack_tuples()])
        )
        change = _Change(
            old.map_elements(),
            new.map_elements(),
            conntrack,
            Deferred(),
            f"relatch {new.access}",
            counted=old,
        )
        return self._change(change)

    def remove(
        self, flow: LegFlow, *, read_counts: bool = True
    ) -> Deferred[FlowCounts | None]:
        """Stop forwarding ``flow`` and delete its entry.

        :param read_counts: read the entry just before it goes and give its
            :class:`FlowCounts` as the result (``None`` when there was no
            entry).  Otherwise the entry is deleted unread and the result is
            ``None``.
        """
        change = _Change(
            flow.map_elements(),
            [],
            [] if read_counts else [flow.box_tuple()],
            Deferred(),
            f"remove {flow.access}",
            counted=flow if read_counts else None,
            delete_counted=True,
        )
        return self._change(change)

    def read(
        self, flows: Sequence[LegFlow]
    ) -> Deferred[dict[LegFlow, FlowCounts | None]]:
        """The counts of each leg's entry; ``None`` for a leg with none."""
        wanted = list(flows)
        return self._call(lambda channel: self._read(channel, wanted))

    def elements(self) -> Deferred[dict[str, list[Element]]]:
        """Every element of the table's maps, by map name."""
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
            if self._commit(channel, group) and len(group) > 1:
                for change in group:
                    self._commit(channel, [change])
            self._conntrack(channel, [change for change in group if not change.error])
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
        for name in MAPS:
            deletes = [e for change in group for n, e in change.deletes if n == name]
            if deletes:
                delete_elements(writer, table, name, deletes)
        for name in MAPS:
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

    def _conntrack(self, channel: NetlinkChannel, group: list[_Change]) -> None:
        """Read the counted legs, delete the tuples, then delete the counted
        entries that exist.  A failure other than ENOENT fails the change
        (its elements are committed all the same)."""
        reads = [change for change in group if change.counted is not None]
        first: list[tuple[_Change, _Op]] = []
        for change in reads:
            assert change.counted is not None
            first.append((change, _Op(change.counted.box_tuple(), read=True)))
        for change in group:
            first += [(change, _Op(flow, read=False)) for flow in change.conntrack]
        found = self._send_ops(channel, first)

        second = []
        for change in reads:
            assert change.counted is not None
            payload = found.get(change)
            if payload is not None:
                change.counts = flow_counts(change.counted, payload)
                if change.delete_counted:
                    second.append((change, _Op(change.counted.box_tuple(), False)))
        self._send_ops(channel, second)

    def _send_ops(
        self, channel: NetlinkChannel, ops: list[tuple[_Change, _Op]]
    ) -> dict[_Change, bytes]:
        """Send ``ops`` in chunks, one acknowledgement per chunk; the entry
        each read found, by its change."""
        found: dict[_Change, bytes] = {}
        for start in range(0, len(ops), _CONNTRACK_CHUNK):
            chunk = ops[start : start + _CONNTRACK_CHUNK]
            seqs = [channel.next_seq() for _op in chunk]
            replies = self._exchange_ops(channel, seqs, [op for _c, op in chunk])
            for seq, (change, op) in zip(seqs, chunk, strict=True):
                reply = replies.get(seq)
                if reply is None:
                    continue
                if reply.error and reply.error != _ENOENT:
                    change.error = reply.error
                elif op.read and reply.messages:
                    found[change] = reply.messages[0]
        return found

    @staticmethod
    def _exchange_ops(
        channel: NetlinkChannel, seqs: list[int], ops: list[_Op]
    ) -> dict[int, Reply]:
        last = len(ops) - 1
        data = b"".join(
            (get_message if op.read else delete_message)(seq, op.flow, index == last)
            for index, (seq, op) in enumerate(zip(seqs, ops, strict=True))
        )
        reads = [seq for seq, op in zip(seqs, ops, strict=True) if op.read]
        return channel.exchange(data, [seqs[-1]], collect=reads)

    def _read(
        self, channel: NetlinkChannel, flows: list[LegFlow]
    ) -> dict[LegFlow, FlowCounts | None]:
        counts: dict[LegFlow, FlowCounts | None] = dict.fromkeys(flows)
        for start in range(0, len(flows), _CONNTRACK_CHUNK):
            chunk = flows[start : start + _CONNTRACK_CHUNK]
            seqs = [channel.next_seq() for _flow in chunk]
            ops = [_Op(flow.box_tuple(), read=True) for flow in chunk]
            replies = self._exchange_ops(channel, seqs, ops)
            for seq, flow in zip(seqs, chunk, strict=True):
                reply = replies.get(seq)
                if reply is None or reply.error == _ENOENT:
                    continue
                if reply.error:
                    raise KernelNatError("read counters", reply.error)
                if reply.messages:
                    counts[flow] = flow_counts(flow, reply.messages[0])
        return counts

    # Whole-table work, run alone on the thread.

    def _dump_set(self, channel: NetlinkChannel, name: str) -> list[Element]:
        seq = channel.next_seq()
        reply = channel.exchange(
            get_elements_message(seq, self.table.name, name), [seq]
        )
        if reply[seq].error:
            raise KernelNatError(f"list {name}", reply[seq].error)
        return [found for m in reply[seq].messages for found in decode_elements(m)]

    def _dump_all(self, channel: NetlinkChannel) -> dict[str, list[Element]]:
        return {name: self._dump_set(channel, name) for name in MAPS}

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
        flows = [tuple_from_core_element(element) for element in core]
        flows += [tuple_from_access_element(element) for element in access]
        deleted = self._delete_tuples(channel, flows)

        writer = BatchWriter(channel.next_seq)
        create_table(writer, self.table)
        batch = writer.finish()
        code = _first_error(
            channel.exchange(batch.data, batch.requests, [batch.begin]).values()
        )
        if code:
            raise KernelNatError(f"create table {self.table.name}", code)
        return Reconciled(len(core) + len(access), deleted)

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
