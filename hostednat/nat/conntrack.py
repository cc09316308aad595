"""Conntrack entries hostednat reads and deletes by exact tuple, without I/O.

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
the same deletes also remove the NATed entry of a leg when it goes,
whichever side sent first.  A filtered dump is never used: it walks every
bucket of the table (lab notes: about 15 ms per dump).

The NATed entry is also where the kernel counts a leg: with conntrack
accounting on, each entry carries packet and byte counters per direction
(CTA_COUNTERS_ORIG and CTA_COUNTERS_REPLY), which an IPCTNL_MSG_CT_GET of
the same exact tuple returns; :func:`decode_entry` reads them.

Every message here has the same fixed layout (one IPv4 UDP tuple), so it is
packed by one precompiled :class:`struct.Struct`: a binding table changes
several entries per binding, and the generic attribute builders of
:mod:`hostednat.nat.netlink` cost about three times as much per message.

Not supported: conntrack zones other than the default, IPv6, and entries
created by a server that sends from a port other than its ``server_port``.
"""

from __future__ import annotations

import socket
import struct

import attrs

from hostednat.nat.binding import Endpoint
from hostednat.nat.netlink import (
    NFNETLINK_V0,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_REQUEST,
    attribute_map,
)

__all__ = ["EntryCounts", "FlowTuple", "decode_entry", "delete_message", "get_message"]

# include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2
_AF_INET = 2
_IPPROTO_UDP = 17

# nlmsghdr, nfgenmsg, then CTA_TUPLE_ORIG { CTA_TUPLE_IP { V4_SRC, V4_DST },
# CTA_TUPLE_PROTO { PROTO_NUM, SRC_PORT, DST_PORT } }, each attribute padded
# to 4 bytes (NLA_ALIGN).  Ports are big-endian on the wire: they are packed
# as native 16-bit numbers after socket.htons().
_HEADERS = "=IHHIIBBH"
_TUPLE = "HH" + "HH" + "HH4s" * 2 + "HH" + "HHB3x" + "HHH2x" * 2
_MESSAGE = struct.Struct(_HEADERS + _TUPLE)
_IP_NEST = 4 + 2 * 8
_PROTO_NEST = 4 + 8 + 8 + 8
_TUPLE_NEST = 4 + _IP_NEST + _PROTO_NEST


@attrs.frozen
class FlowTuple:
    """A UDP conntrack tuple: where a packet came from and went to."""

    source: Endpoint
    destination: Endpoint

    def __str__(self) -> str:
        return f"udp {self.source} -> {self.destination}"


def _message(msg_type: int, seq: int, flow: FlowTuple, ack: bool) -> bytes:
    kind = NFNL_SUBSYS_CTNETLINK << 8 | msg_type
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return _MESSAGE.pack(
        _MESSAGE.size,
        kind,
        flags,
        seq,
        0,
        _AF_INET,
        NFNETLINK_V0,
        0,
        _TUPLE_NEST,
        CTA_TUPLE_ORIG | NLA_F_NESTED,
        _IP_NEST,
        CTA_TUPLE_IP | NLA_F_NESTED,
        8,
        CTA_IP_V4_SRC,
        socket.inet_aton(flow.source.host),
        8,
        CTA_IP_V4_DST,
        socket.inet_aton(flow.destination.host),
        _PROTO_NEST,
        CTA_TUPLE_PROTO | NLA_F_NESTED,
        5,
        CTA_PROTO_NUM,
        _IPPROTO_UDP,
        6,
        CTA_PROTO_SRC_PORT,
        socket.htons(flow.source.port),
        6,
        CTA_PROTO_DST_PORT,
        socket.htons(flow.destination.port),
    )


def delete_message(seq: int, flow: FlowTuple, ack: bool = True) -> bytes:
    """IPCTNL_MSG_CT_DELETE of the entry with tuple ``flow``.

    The kernel answers ENOENT when no entry has that tuple, and success only
    with ``ack``: a run of deletes asks for one acknowledgement, on its last
    message, and still hears of every failure before it.
    """
    return _message(IPCTNL_MSG_CT_DELETE, seq, flow, ack)


def get_message(seq: int, flow: FlowTuple, ack: bool = True) -> bytes:
    """IPCTNL_MSG_CT_GET of the entry with tuple ``flow``, in either direction.

    The kernel answers with the entry (an IPCTNL_MSG_CT_NEW message of the
    same sequence number) or with ENOENT; the acknowledgement follows the
    entry only with ``ack``.
    """
    return _message(IPCTNL_MSG_CT_GET, seq, flow, ack)


@attrs.frozen
class EntryCounts:
    """A conntrack entry's original tuple and its counters per direction.

    The counters are zero when accounting was off as the entry was made.
    """

    original: FlowTuple
    original_packets: int = 0
    original_bytes: int = 0
    reply_packets: int = 0
    reply_bytes: int = 0


def _endpoints(tuple_attribute: memoryview) -> FlowTuple:
    fields = attribute_map(tuple_attribute)
    addresses = attribute_map(fields[CTA_TUPLE_IP])
    ports = attribute_map(fields[CTA_TUPLE_PROTO])
    source = socket.inet_ntoa(bytes(addresses[CTA_IP_V4_SRC]))
    destination = socket.inet_ntoa(bytes(addresses[CTA_IP_V4_DST]))
    return FlowTuple(
        Endpoint(source, int.from_bytes(ports[CTA_PROTO_SRC_PORT], "big")),
        Endpoint(destination, int.from_bytes(ports[CTA_PROTO_DST_PORT], "big")),
    )


def _counters(fields: dict[int, memoryview], kind: int) -> tuple[int, int]:
    if kind not in fields:
        return 0, 0
    counters = attribute_map(fields[kind])
    packets = int.from_bytes(counters.get(CTA_COUNTERS_PACKETS, b""), "big")
    octets = int.from_bytes(counters.get(CTA_COUNTERS_BYTES, b""), "big")
    return packets, octets


def decode_entry(payload: bytes) -> EntryCounts:
    """Read an entry the kernel sent (a get's answer or a dump's part).

    :param payload: the message after its netlink header, nfgen header
        first, as :attr:`~hostednat.nat.netlink.Reply.messages` hold it.
    :raises KeyError: the message has no IPv4 original tuple.
    """
    fields = attribute_map(memoryview(payload)[4:])
    original = _endpoints(fields[CTA_TUPLE_ORIG])
    original_packets, original_bytes = _counters(fields, CTA_COUNTERS_ORIG)
    reply_packets, reply_bytes = _counters(fields, CTA_COUNTERS_REPLY)
    return EntryCounts(
        original, original_packets, original_bytes, reply_packets, reply_bytes
    )
