"""The Transport rewrite of hosted NAT (reference 6.3, 6.4; decision D7).

For a SETUP the proxy picks the first UDP unicast transport-spec, gets a
binding for it, and rewrites it so that the server sends to the binding's
core side.  The server's answer is rewritten so that the box punches to the
binding's access side:

=================  ======================  =====================
field              towards the server      towards the box
=================  ======================  =====================
``client_port``    core pair               the box's own ports
``destination``    core address, if set    removed
``server_port``    (as the box sent)       access pair
``source``         (absent)                access address
``dest_addr``      core address and pair   the box's own value
``src_addr``       (absent)                access address, pair
=================  ======================  =====================

Everything else (``ssrc``, ``mode``, ``ttl``, unknown parameters) passes as
the peer wrote it.  TCP-interleaved alternatives pass untouched; further UDP
unicast and multicast alternatives are dropped, since they would bypass the
binding.  A ``destination`` or ``dest_addr`` naming an address other than the
box's own is never forwarded: it would turn the server into a reflector
against a third party (RFC 2326 12.39 on ``destination``, RFC 7826 18.54).
"""

from __future__ import annotations

import attrs

from hostednat.nat.binding import Binding, Endpoint, PortPair
from hostednat.rtsp.transport import HostPort, PortRange, TransportSpec

__all__ = ["SetupPlan", "answer_to_box", "plan_setup", "server_endpoints"]


@attrs.frozen
class SetupPlan:
    """What the proxy does with a SETUP's Transport header.

    :param specs: the alternatives to forward, guards already applied; the
        hosted-NAT one (if any) still carries the box's ports.
    :param nat_index: position of the hosted-NAT spec in ``specs``.
    :param box_ports: the ports the box asked for on that spec.
    :param box_spec: that spec as the box sent it.
    :param dropped_destination: a third-party destination was removed.
    """

    specs: tuple[TransportSpec, ...]
    nat_index: int | None = None
    box_ports: PortPair | None = None
    box_spec: TransportSpec | None = None
    dropped_destination: bool = False

    @property
    def hosted(self) -> bool:
        return self.nat_index is not None

    def for_server(self, binding: Binding, send_destination: bool) -> str:
        """The Transport value to forward, pointing the server at the core."""
        specs = list(self.specs)
        if self.nat_index is not None:
            specs[self.nat_index] = _towards_core(
                specs[self.nat_index], binding, send_destination
            )
        return ", ".join(str(spec) for spec in specs)

    def passthrough(self) -> str:
        return ", ".join(str(spec) for spec in self.specs)


def is_udp_unicast(spec: TransportSpec) -> bool:
    """RFC 2326 12.39 defaults to multicast; a client port implies unicast."""
    if spec.lower_transport != "UDP" or spec.is_multicast:
        return False
    return spec.is_unicast or spec.has("client_port") or spec.has("dest_addr")


def plan_setup(specs: list[TransportSpec], box_address: str) -> SetupPlan:
    """Choose the hosted-NAT alternative and apply the reflection guard."""
    kept: list[TransportSpec] = []
    nat_index: int | None = None
    box_ports: PortPair | None = None
    box_spec: TransportSpec | None = None
    dropped = False
    for original in specs:
        spec = attrs.evolve(original, params=list(original.params))
        dropped |= _drop_foreign_destination(spec, box_address)
        if is_udp_unicast(spec):
            ports = _box_ports(spec)
            if nat_index is not None or ports is None:
                continue
            nat_index, box_ports, box_spec = len(kept), ports, original
        elif spec.lower_transport == "UDP":
            continue
        kept.append(spec)
    return SetupPlan(tuple(kept), nat_index, box_ports, box_spec, dropped)


def server_endpoints(
    answer: TransportSpec, server_address: str
) -> tuple[Endpoint, Endpoint | None] | None:
    """Where the server's media comes from, per its SETUP answer.

    ``source`` (1.0) or ``src_addr`` (2.0) when given, else the address of
    the RTSP connection (what GStreamer rtsp-server and live555 do).
    """
    host = answer.source or server_address
    ports = answer.server_port
    addresses = answer.src_addr
    if addresses:
        first = addresses[0]
        host = first.host or host
        if first.port is not None:
            second = addresses[1].port if len(addresses) > 1 else None
            ports = PortRange(first.port, second)
    if ports is None:
        return None
    rtcp_port = ports.last if ports.last is not None else None
    rtcp = Endpoint(host, rtcp_port) if rtcp_port is not None else None
    return Endpoint(host, ports.first), rtcp


def answer_to_box(answer: TransportSpec, plan: SetupPlan, binding: Binding) -> str:
    """The server's chosen spec, rewritten to send the box to the access side."""
    spec = attrs.evolve(answer, params=list(answer.params))
    box = plan.box_spec
    assert box is not None and plan.box_ports is not None
    access = binding.access
    spec.remove("destination")
    if box.has("client_port") or spec.has("client_port"):
        box_range = box.client_port or _range(plan.box_ports)
        spec.set_ports("client_port", box_range)
    if box.has("dest_addr"):
        spec.set("dest_addr", box.get_raw("dest_addr"))
    if spec.has("src_addr") or box.has("dest_addr"):
        spec.set_addr_list("src_addr", _addr_list(binding.access_address, access))
        spec.remove("source")
        spec.remove("server_port")
    else:
        spec.set_ports("server_port", _range(access))
        spec.set("source", binding.access_address)
    return str(spec)


def _towards_core(
    spec: TransportSpec, binding: Binding, send_destination: bool
) -> TransportSpec:
    spec = attrs.evolve(spec, params=list(spec.params))
    core = binding.core
    if spec.has("dest_addr"):
        spec.set_addr_list("dest_addr", _addr_list(binding.core_address, core))
    if spec.has("client_port") or not spec.has("dest_addr"):
        spec.set_ports("client_port", _range(core))
    if send_destination and not spec.has("dest_addr"):
        spec.set("destination", binding.core_address)
    else:
        spec.remove("destination")
    return spec


def _drop_foreign_destination(spec: TransportSpec, box_address: str) -> bool:
    dropped = False
    destination = spec.destination
    if destination is not None and destination != box_address:
        spec.remove("destination")
        dropped = True
    addresses = spec.dest_addr
    if addresses and any(a.host not in (None, box_address) for a in addresses):
        spec.remove("dest_addr")
        dropped = True
    return dropped


def _box_ports(spec: TransportSpec) -> PortPair | None:
    client = spec.client_port
    if client is not None:
        return PortPair(
            client.first, client.last if client.last != client.first else None
        )
    addresses = spec.dest_addr
    if addresses and addresses[0].port is not None:
        second = addresses[1].port if len(addresses) > 1 else None
        return PortPair(addresses[0].port, second)
    return None


def _range(pair: PortPair) -> PortRange:
    return PortRange(pair.rtp, pair.rtcp)


def _addr_list(host: str, pair: PortPair) -> list[HostPort]:
    return [HostPort(host, pair.port(leg)) for leg in pair.legs()]
