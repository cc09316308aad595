"""The kernel backend's binding table: latch in userspace, forward in the kernel.

Theory of operation.  :class:`KernelBindingTable` is the
:class:`~hostednat.nat.binding.BindingTable` for ``[nat] backend =
"kernel"``.  It is the userspace table (:mod:`hostednat.nat.userspace`): its
sockets still receive the box's punches and its guards still decide every
latch.  Through the table's
:meth:`~hostednat.nat.userspace.UserspaceBindingTable.leg_latched` hook, a
leg that has both a latched endpoint and the server's endpoint goes into
the kernel (:class:`~hostednat.nat.kernel_nat.KernelNat`).  From the moment
it is handed over the Python relay forwards nothing of the leg
(:meth:`~hostednat.nat.userspace.UserspaceBindingTable.hold`): a datagram
it relayed after the kernel deleted the leg's old conntrack entries would
leave a new one that diverts the media to Python again.  The few datagrams
that reach the leg's sockets between the handover and the kernel's commit
(the rest of a burst of punches, usually) are dropped; after the commit
none arrives.  A leg latched before the server's endpoint is known, or
whose install the kernel refused, is relayed in Python.

Datagrams that miss the kernel's maps still reach the access socket: from
another host (dropped and counted by the guard), or from another port of
the box's IP (a NAT rebinding, which relatches after the latched endpoint's
silence, or in a window the proxy opened), and the relatch moves the leg in
the kernel.

Counting.  Every ``counter_interval`` seconds the table reads each leg's
conntrack counters (one exact-tuple get per leg, on the netlink thread).
A read that shows new packets from the box tells the leg's guard that the
latched endpoint is alive
(:meth:`~hostednat.nat.userspace.UserspaceBindingTable.mark_alive`), so
that a silent-mapping relatch (reference 7.2 rule 3b) cannot fire on a leg
whose box still talks through the kernel.  When an entry disappears
(expired after the box and the server went quiet) or is replaced between
two reads, its last read is kept; a removal or relatch reads the entry once
more just before deleting it, so a released binding's kernel count is
exact.  :meth:`KernelBindingTable.counters` adds the kernel's counts to the
relay's; :meth:`KernelBindingTable.forwarded_packets` gives the two apart,
and each release logs them (``kernel.binding_removed``).

Not supported: running without CAP_NET_ADMIN (:func:`check_capability`), and
kernel counts of an entry that something else deleted between two reads.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hostednat import events
from hostednat.config import NatConfig
from hostednat.nat.binding import Binding, BindingCounters, Endpoint, Leg
from hostednat.nat.kernel_nat import FlowCounts, KernelNat, Reconciled
from hostednat.nat.nftables import LegFlow, NatTable
from hostednat.nat.ports import PortPool
from hostednat.nat.userspace import UserspaceBindingTable

__all__ = [
    "ForwardedPackets",
    "KernelBackendUnavailable",
    "KernelBindingTable",
    "KernelNatLike",
    "build_kernel_table",
    "check_capability",
]

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

    def relatch(self, old: LegFlow, new: LegFlow) -> Deferred[FlowCounts | None]:
        """Move a leg to a new public endpoint; the old entry's final count."""

    def remove(self, flow: LegFlow) -> Deferred[FlowCounts | None]:
        """Stop forwarding ``flow``; its entry's final count."""

    def read(self, flows: list[LegFlow]) -> Deferred[dict[LegFlow, FlowCounts | None]]:
        """The counts of each leg's entry."""

    def stop(self) -> Deferred[None]:
        """Delete the table."""


def _went_back(current: FlowCounts, previous: FlowCounts) -> bool:
    return (
        current.packets_to_box < previous.packets_to_box
        or current.packets_to_server < previous.packets_to_server
    )


@attrs.define
class _LegCounts:
    """A leg's kernel counts: entries that are gone, plus the live one."""

    finished: FlowCounts = attrs.field(factory=FlowCounts)
    live: FlowCounts = attrs.field(factory=FlowCounts)

    def observe(self, current: FlowCounts | None) -> bool:
        """Take a read of the leg's entry (``None``: there is none).

        :returns: whether the box sent packets since the previous read.
        """
        previous = self.live
        if current is None or _went_back(current, previous):
            # The entry read last time is gone: keep what it had counted.
            self.finished += previous
            previous = FlowCounts()
        self.live = current or FlowCounts()
        return self.live.packets_to_server > previous.packets_to_server

    def close(self, final: FlowCounts | None) -> FlowCounts:
        """Take the entry's last read before its deletion; the leg's total."""
        self.observe(final)
        self.finished += self.live
        self.live = FlowCounts()
        return self.finished

    def total(self) -> FlowCounts:
        """Everything counted so far."""
        return self.finished + self.live


class KernelBindingTable(UserspaceBindingTable):
    """A binding table that latches in userspace and forwards in the kernel.

    :param reactor: a Twisted reactor (descriptors, time, threads).
    :param nat: the kernel's side (a startable :class:`KernelNat`).
    :param counter_interval: seconds between counter reads.
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
        self._counts: dict[tuple[Binding, Leg], _LegCounts] = {}
        self._kernel_retired = FlowCounts()
        self._removing: set[Binding] = set()
        self._poll: LoopingCall | None = None

    def start(self) -> Deferred[Reconciled]:
        """Reconcile and create the kernel table, then read counters.

        Call it, and wait for it, before accepting connections.

        :raises KernelNatError: (in the Deferred) the kernel refused.
        """
        started = self._nat.start()
        started.addCallback(self._started)
        return started

    def _started(self, reconciled: Reconciled) -> Reconciled:
        if reconciled.elements or reconciled.conntrack_deleted:
            self._log.info(
                "Removed {elements} map elements and {conntrack_deleted}"
                " conntrack entries left by a previous run",
                hostednat_event=events.KERNEL_RECONCILED,
                elements=reconciled.elements,
                conntrack_deleted=reconciled.conntrack_deleted,
            )
        self._poll = LoopingCall(self.refresh_counters)
        self._poll.clock = self.reactor  # type: ignore[assignment]
        self._poll.start(self._counter_interval, now=False)
        return reconciled

    def install(
        self, binding: Binding, server_rtp: Endpoint, server_rtcp: Endpoint | None
    ) -> Deferred[None]:
        """Record the server's endpoints; legs already latched go in now."""
        recorded = super().install(binding, server_rtp, server_rtcp)
        legs = [leg for leg in binding.access.legs() if leg in binding.latched]
        return _all([recorded, *(self._sync(binding, leg) for leg in legs)])

    def leg_latched(
        self, binding: Binding, leg: Leg, source: Endpoint
    ) -> Deferred[None]:
        """Put the leg in the kernel, or move it there; fires once it is.

        :raises KernelNatError: (in the Deferred) the kernel refused the
            leg, which stays with the userspace relay (logged).
        """
        return self._sync(binding, leg)

    def _sync(self, binding: Binding, leg: Leg) -> Deferred[None]:
        """Bring the kernel in line with the leg's latched and server ends."""
        key = (binding, leg)
        server, public = binding.server.get(leg), binding.latched.get(leg)
        access, core = binding.access.port(leg), binding.core.port(leg)
        if binding in self._removing or server is None or public is None:
            return _done()
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

        # From here on Python relays nothing of the leg: a datagram it sent
        # after the kernel's conntrack deletes would divert the leg's media
        # back to this table's socket (see hostednat.nat.conntrack).
        self.hold(binding, leg, True)
        self._flows[key] = new
        counts = self._counts.setdefault(key, _LegCounts())
        if old is None:
            changed: Deferred[Any] = self._nat.install(new)
        else:
            changed = self._nat.relatch(old, new)
            changed.addCallback(counts.close)

        def refused(failure: Failure) -> Failure:
            # A failed transaction changed nothing: the old state stands.
            if self._flows.get(key) == new:
                if old is None:
                    self._flows.pop(key, None)
                    self.hold(binding, leg, False)
                else:
                    self._flows[key] = old
            self._failed("install" if old is None else "relatch", failure, binding, leg)
            return failure

        changed.addCallbacks(lambda _: None, refused)
        return changed

    def remove(self, binding: Binding) -> Deferred[None]:
        """Take the binding's legs out of the kernel, then release it."""
        if binding in self._removing or binding not in self:
            return _done()
        self._removing.add(binding)
        legs: list[Deferred[FlowCounts]] = []
        for leg in binding.access.legs():
            flow = self._flows.pop((binding, leg), None)
            counts = self._counts.pop((binding, leg), None) or _LegCounts()
            if flow is None:
                legs.append(succeed(counts.total()))
                continue
            removal: Deferred[Any] = self._nat.remove(flow)
            removal.addCallback(counts.close)
            removal.addErrback(self._removal_failed, binding, leg, counts)
            legs.append(removal)
        gathered: Deferred[list[FlowCounts]] = gatherResults(legs)
        return gathered.addCallback(self._removed, binding)

    def _removal_failed(
        self, failure: Failure, binding: Binding, leg: Leg, counts: _LegCounts
    ) -> FlowCounts:
        self._failed("remove", failure, binding, leg)
        return counts.total()

    def _removed(self, legs: list[FlowCounts], binding: Binding) -> Deferred[None]:
        kernel = sum(legs, FlowCounts())
        python = super().counters(binding)
        self._kernel_retired += kernel
        self._log.info(
            "binding {binding} released: the kernel forwarded {kernel_to_box}"
            " packets to the box and {kernel_to_server} to the server, Python"
            " {python_to_box} and {python_to_server}",
            hostednat_event=events.KERNEL_BINDING_REMOVED,
            binding=binding.binding_id,
            session=binding.request.session_key,
            kernel_to_box=kernel.packets_to_box,
            kernel_to_server=kernel.packets_to_server,
            python_to_box=python.packets_to_box,
            python_to_server=python.packets_to_server,
            latch_datagrams=python.latch_datagrams,
        )
        self._removing.discard(binding)
        return super().remove(binding)

    def _failed(self, what: str, failure: Failure, binding: Binding, leg: Leg) -> None:
        self._log.error(
            "Kernel could not {what} binding {binding} {leg}: {error}",
            hostednat_event=events.KERNEL_BINDING_FAILED,
            what=what,
            binding=binding.binding_id,
            leg=leg.value,
            error=failure.getErrorMessage(),
            errno=getattr(failure.value, "errno", None),
        )

    def counters(self, binding: Binding) -> BindingCounters:
        """The relay's counts plus the kernel's, as of the last read.

        :raises BindingFailed: ``binding`` is not in this table.
        """
        total = super().counters(binding)
        total.add(_as_counters(self.kernel_counts(binding)))
        return total

    def kernel_counts(self, binding: Binding) -> FlowCounts:
        """The kernel's part of ``binding``'s counts, as of the last read."""
        total = FlowCounts()
        for leg in binding.access.legs():
            counts = self._counts.get((binding, leg))
            if counts is not None:
                total += counts.total()
        return total

    def totals(self) -> BindingCounters:
        """Counts over every binding, userspace and kernel."""
        total = super().totals()
        total.add(_as_counters(self._kernel_totals()))
        return total

    def forwarded_packets(self) -> ForwardedPackets:
        """Packets the kernel forwarded, against those Python relayed."""
        python = super().totals()
        return ForwardedPackets(
            kernel=self._kernel_totals().packets,
            python=python.packets_to_box + python.packets_to_server,
        )

    def _kernel_totals(self) -> FlowCounts:
        live = (counts.total() for counts in self._counts.values())
        return sum(live, self._kernel_retired)

    def refresh_counters(self) -> Deferred[None]:
        """Read every leg's counters from the kernel; tell the guards."""
        asked = dict(self._flows)
        now = self.reactor.seconds()
        reading = self._nat.read(list(asked.values()))
        counted = reading.addCallback(self._counted, asked, now)
        return counted.addErrback(self._counting_failed)

    def _counted(
        self,
        counts: dict[LegFlow, FlowCounts | None],
        asked: dict[tuple[Binding, Leg], LegFlow],
        now: float,
    ) -> None:
        for key, flow in asked.items():
            # A leg removed or moved meanwhile was counted by that change.
            if self._flows.get(key) != flow:
                continue
            if self._counts[key].observe(counts.get(flow)):
                self.mark_alive(key[0], key[1], now)

    def _counting_failed(self, failure: Failure) -> None:
        self._log.error(
            "Reading kernel counters failed: {error}",
            hostednat_event=events.KERNEL_BINDING_FAILED,
            error=failure.getErrorMessage(),
            errno=getattr(failure.value, "errno", None),
        )

    def close(self) -> Deferred[None]:
        """Remove every binding, stop reading counters, delete the table."""
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        removals = [self.remove(binding) for binding in self]
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
