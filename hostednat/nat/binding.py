"""The media binding model and the binding-table seam.

A *binding* is what hosted NAT allocates for one UDP unicast stream (ETSI TS
187 021 clause 8; TS 183 017 Binding-Information):

- a **core-side** port pair on the edge's core address, given to the media
  server as ``client_port``; the server sends RTP and RTCP there;
- an **access-side** port pair on the edge's access address, given to the box
  as ``server_port`` with ``source``; the box punches towards it through its
  home gateway, and the edge *latches* the gateway's public mapping from that
  first datagram (only from the box's own address, RFC 7604 4.4-4.6);
- once latched, media from the core side leaves *from the access port the box
  sent to* towards the latched address, and the box's RTCP goes to the
  server's ``server_port``.

A binding has one or two *legs*: RTP, and RTCP unless the transport uses a
single port (``MP2T/H2221/UDP;client_port=27392``). Legs latch independently,
since a NAPT may map the two box ports to unrelated public ports.

:class:`BindingTable` is the seam between the proxy and the data plane: the
userspace relay is the embedded default, the kernel backend (nftables maps
and conntrack over netlink) implements the same protocol.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class Leg(enum.Enum):
    """One of the two flows of a binding."""

    RTP = "rtp"
    RTCP = "rtcp"


@attrs.frozen
class Endpoint:
    """A transport address: IP address text and UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@attrs.frozen
class PortPair:
    """An RTP port and its RTCP port, or a single port for non-RTP transports.

    RFC 3550 11: RTP on an even port, RTCP on the next odd one.
    """

    rtp: int
    rtcp: int | None = None

    def __str__(self) -> str:
        return str(self.rtp) if self.rtcp is None else f"{self.rtp}-{self.rtcp}"

    @property
    def single(self) -> bool:
        return self.rtcp is None

    def port(self, leg: Leg) -> int | None:
        return self.rtp if leg is Leg.RTP else self.rtcp

    def legs(self) -> tuple[Leg, ...]:
        return (Leg.RTP,) if self.rtcp is None else (Leg.RTP, Leg.RTCP)


class NoPortsAvailable(Exception):
    """No free port pair is left in a configured range.

    RTSP answer: 453 Not Enough Bandwidth (RFC 2326 11.3.8), the code boxes
    already treat as "resources exhausted, try later".
    """

    status = 453


class BindingFailed(Exception):
    """The data plane could not install or change a binding."""

    status = 503


@attrs.frozen
class BindingRequest:
    """What the proxy knows about a stream when it asks for a binding.

    :param box_address: source IP of the box's RTSP connection, the only IP
        allowed to latch (the gateway's public address).
    :param box_ports: the ``client_port`` the box asked for.  Informational
        (the gateway maps it to something else); it goes into Gq'
        Binding-Input-List.
    :param session_key: a label tying the binding to its RTSP session in logs.
    """

    box_address: str
    box_ports: PortPair
    session_key: str = ""


@attrs.define(eq=False)
class Binding:
    """One allocated binding; mutated only by its table."""

    binding_id: str
    request: BindingRequest
    access_address: str
    core_address: str
    access: PortPair
    core: PortPair
    server: dict[Leg, Endpoint] = attrs.field(factory=dict)
    latched: dict[Leg, Endpoint] = attrs.field(factory=dict)

    @property
    def single_port(self) -> bool:
        return self.access.single


@attrs.define
class BindingCounters:
    """Packet and byte counts for one binding, or for a whole table.

    ``*_to_box`` is core-to-access media, ``*_to_server`` is box RTCP (and
    punch datagrams when they are forwarded); the ``dropped_*`` counts are
    datagrams refused by the latching rules.
    """

    packets_to_box: int = 0
    bytes_to_box: int = 0
    packets_to_server: int = 0
    bytes_to_server: int = 0
    dropped_before_latch: int = 0
    dropped_foreign_source: int = 0
    latch_datagrams: int = 0

    def add(self, other: BindingCounters) -> None:
        """Add ``other`` into this one, field by field."""
        for field in attrs.fields(BindingCounters):
            total = getattr(self, field.name) + getattr(other, field.name)
            setattr(self, field.name, total)


class BindingObserver(Protocol):
    """Told about data-plane events; the session table implements it."""

    def binding_latched(self, binding: Binding, leg: Leg, source: Endpoint) -> None:
        """``leg`` of ``binding`` latched (or relatched) to ``source``."""


class BindingTable(Protocol):
    """Where bindings live: the userspace relay or the kernel.

    ``allocate`` is synchronous (ports are reserved locally); everything that
    may touch the kernel returns a Deferred and never blocks the reactor.
    """

    def allocate(self, request: BindingRequest) -> Binding:
        """Reserve access and core ports and start listening for the punch.

        :raises NoPortsAvailable: a port range is exhausted.
        """

    def install(
        self, binding: Binding, server_rtp: Endpoint, server_rtcp: Endpoint | None
    ) -> Deferred[None]:
        """Record where the server sends from, once its SETUP answer is in.

        Box RTCP goes to ``server_rtcp``; media from the core side is accepted
        from the server.
        """

    def latch(self, binding: Binding, leg: Leg, source: Endpoint) -> Deferred[None]:
        """Send ``leg``'s media to ``source`` from now on.

        The access-side guard calls it on the first acceptable datagram; the
        proxy calls it for an explicit relatch.
        """

    def relatch(self, binding: Binding) -> None:
        """Open a new latch window for both legs (RTSP re-PLAY, RELATCH)."""

    def remove(self, binding: Binding) -> Deferred[None]:
        """Release the ports and every data-plane trace of ``binding``."""

    def counters(self, binding: Binding) -> BindingCounters:
        """Current counts for ``binding``."""

    def totals(self) -> BindingCounters:
        """Counts over every binding the table has carried."""

    def close(self) -> Deferred[None]:
        """Remove every binding; called at shutdown."""
