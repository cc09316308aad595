"""Conntrack entries hostednat deletes, by exact tuple, without any I/O.

Two kinds of entry stop a freshly installed binding from forwarding (lab
notes, "Conntrack, the part that bites"):

- the *stale entry*: media the server sent to a core port before the leg
  latched was delivered locally and left an un-NATed entry; as long as media
  keeps it alive the kernel never consults the new map element;
- the *punch clash*: the box's punch to its access port left an entry whose
  tuple equals the reply tuple the NATed media flow needs; the NATed entry
  then fails to insert and every media packet is dropped
  (``conntrack -S``: insert_failed).

Both are deleted right after the map elements are in, each by its exact
original tuple: a hash lookup in the kernel (IPCTNL_MSG_CT_DELETE with
CTA_TUPLE_ORIG).  The kernel finds an entry by either of its two tuples, so
the same two deletes also remove the NATed entry of a leg when it goes,
whichever side sent first.  A filtered dump is never used: it walks every
bucket of the table (lab notes: about 15 ms per dump).

Not supported: conntrack zones other than the default, and entries created
by a server that sends from a port other than its ``server_port``.
"""

from __future__ import annotations

import socket
import struct

import attrs

from hostednat.nat.binding import Endpoint
from hostednat.nat.netlink import NLM_F_ACK, NLM_F_REQUEST, nest, nfgen_message, nla

__all__ = ["FlowTuple", "delete_message"]

# include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
_AF_INET = 2
_IPPROTO_UDP = 17
_PORT = struct.Struct("!H")


@attrs.frozen
class FlowTuple:
    """A UDP conntrack tuple: where a packet came from and went to."""

    source: Endpoint
    destination: Endpoint

    def __str__(self) -> str:
        return f"udp {self.source} -> {self.destination}"


def _tuple_attribute(flow: FlowTuple) -> bytes:
    source = socket.inet_pton(socket.AF_INET, flow.source.host)
    destination = socket.inet_pton(socket.AF_INET, flow.destination.host)
    return nest(
        CTA_TUPLE_ORIG,
        nest(
            CTA_TUPLE_IP,
            nla(CTA_IP_V4_SRC, source),
            nla(CTA_IP_V4_DST, destination),
        ),
        nest(
            CTA_TUPLE_PROTO,
            nla(CTA_PROTO_NUM, bytes([_IPPROTO_UDP])),
            nla(CTA_PROTO_SRC_PORT, _PORT.pack(flow.source.port)),
            nla(CTA_PROTO_DST_PORT, _PORT.pack(flow.destination.port)),
        ),
    )


def delete_message(seq: int, flow: FlowTuple, ack: bool = True) -> bytes:
    """IPCTNL_MSG_CT_DELETE of the entry with tuple ``flow``.

    The kernel answers ENOENT when no entry has that tuple, and success only
    with ``ack``: a run of deletes asks for one acknowledgement, on its last
    message, and still hears of every failure before it.
    """
    kind = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return nfgen_message(kind, flags, seq, _AF_INET, _tuple_attribute(flow))
