"""The nftables table hostednat owns, and its messages, without any I/O.

Theory of operation.  One ``ip`` table (its name from ``[nat] table``) holds
two maps, two base chains and one regular chain; a binding leg is two map
elements, so installing or removing one never adds a rule:

``core`` map, ``ipv4_addr . inet_service`` to a 16-byte value
    keyed by the server's address and the leg's *core* port; the value is
    the latched public endpoint followed by the leg's *access* endpoint.
``access`` map, ``ipv4_addr . inet_service . inet_service`` to 16 bytes
    keyed by the latched public endpoint and the leg's access port; the value
    is the server's endpoint followed by the leg's core endpoint.

The ``prerouting`` chain (nat, priority -100) translates the destination of
a leg's first packet, whichever side sends it: a packet to the core address
from the server is looked up in ``core`` and goes to the public endpoint; a
packet to the access address is looked up in ``access`` by its source and
port, so only the latched endpoint reaches the server.  The ``postrouting``
chain (nat, priority 100) looks up the *original* tuple of the connection
(``ct original``) in the same maps and translates the source to the second
half of the value: the access endpoint the box punched to (reference 7.2
rule 5) or the core endpoint.  Either way one conntrack entry with both
translations carries the leg in both directions, so the box's RTCP reaches
the server however the two sides' first packets interleave.  NAT chains see
only a connection's first packet: after it, a leg's packets cross the edge
without any rule of this table being evaluated.

Counting.  The kernel counts a leg in its conntrack entry (see
:mod:`hostednat.nat.conntrack`), which needs conntrack accounting in the
namespace.  The ``accounting`` chain has no hook, so nothing ever runs it;
its one rule reads ``ct packets``, and loading a rule that reads a
conntrack counter is how nf_tables turns accounting on for its namespace
(``nft_ct_get_init`` calls ``nf_ct_set_acct``: the sysctl
``net.netfilter.nf_conntrack_acct`` reads 1 from then on, and stays so when
the table goes).  This needs no write to ``/proc/sys``, which a hardened
service may not have.  An earlier layout counted in a third base chain
(filter, postrouting) with a set lookup per packet; see
``benchmarks/kernel_bindings.py`` for what each costs.

Registers (``include/uapi/linux/netfilter/nf_tables.h``): keys are built in
the 32-bit registers 8, 9, 10 (``NFT_REG32_00``..``02``, where
``NFT_REG_1`` starts), each field padded to 4 bytes as nft pads the fields
of a concatenation; a lookup copies the 16-byte value to registers 8-11; the
NAT expression takes the address from 8 or 10 and the port from 9 or 11.
Type ids follow nft's ``datatype.h``: ipv4_addr 7, inet_service 13, and a
concatenation shifts the earlier fields left by 6 bits per field (lab notes,
"nftables maps through pyroute2 0.9.7").

Not supported: IPv6 (the table is ``ip`` only), ports that the server sends
from other than its ``server_port`` for the stale-entry delete (see
:mod:`hostednat.nat.conntrack`), filtering punch payloads on their way to the
server (reference 7.2 rule 9: the kernel forwards everything from the latched
endpoint), and policing (rule 7).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from pyroute2.netlink.nfnetlink.nftsocket import (
    nft_chain_msg,
    nft_rule_msg,
    nft_set_msg,
    nft_table_msg,
)

from hostednat.nat.binding import Endpoint
from hostednat.nat.conntrack import FlowTuple
from hostednat.nat.netlink import (
    NLA_MAX_PAYLOAD,
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attribute_map,
    attributes,
    nest,
    nfgen_message,
    nla,
)

__all__ = [
    "ACCESS_MAP",
    "CORE_MAP",
    "MAPS",
    "BatchWriter",
    "Element",
    "LegFlow",
    "NatTable",
]

# include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWTABLE = 0
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NFPROTO_IPV4 = 2
NFTA_TABLE_NAME = 1
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_DATA_VALUE = 1

# nftables datatype.h; a concatenation is (first << 6 | second) << 6 | ...
_IPV4_ADDR = 7
_INET_SERVICE = 13
_TYPE_BITS = 6

# Registers: NFT_REG_1 is the 16-byte register over NFT_REG32_00..03 (8-11).
_REG_1 = 1
_REG32_01 = 9
_REG32_02 = 10
_REG32_03 = 11

# Hooks, priorities (nft's dstnat, srcnat), and header bases.
_HOOK_PREROUTING = 0
_HOOK_POSTROUTING = 4
_NFT_PAYLOAD_NETWORK_HEADER = 1
_NFT_PAYLOAD_TRANSPORT_HEADER = 2
_NFT_META_L4PROTO = 16
_NFT_CT_PROTO_SRC = 0x0B
_NFT_CT_PROTO_DST = 0x0C
_NFT_CT_SRC_IP = 0x13
_NFT_CT_DST_IP = 0x14
_NFT_CT_PKTS = 0x0E
_IP_CT_DIR_ORIGINAL = 0
_NFT_CMP_NEQ = 1
_NFT_NAT_SNAT = 0
_NFT_NAT_DNAT = 1
_IPPROTO_UDP = 17

CORE_MAP = "core"
ACCESS_MAP = "access"
MAPS = (CORE_MAP, ACCESS_MAP)
ACCOUNTING_CHAIN = "accounting"

_FIELD_PORT = struct.Struct("!H2x")


def _concat_type(*types: int) -> int:
    value = 0
    for kind in types:
        value = value << _TYPE_BITS | kind
    return value


def _pack(*endpoints: Endpoint) -> bytes:
    """Address and port of each endpoint, each field padded to 4 bytes."""
    return b"".join(
        socket.inet_pton(socket.AF_INET, point.host) + _FIELD_PORT.pack(point.port)
        for point in endpoints
    )


def _unpack(value: bytes, offset: int) -> Endpoint:
    host = socket.inet_ntop(socket.AF_INET, value[offset : offset + 4])
    (port,) = _FIELD_PORT.unpack_from(value, offset + 4)
    return Endpoint(host, port)


@attrs.frozen
class Element:
    """One set or map element: a key, and a value for maps."""

    key: bytes
    value: bytes | None = None


@attrs.frozen
class LegFlow:
    """One latched leg as the kernel forwards it.

    :param server: where the server sends the leg from and gets box RTCP.
    :param core: the leg's core-side endpoint on the edge.
    :param access: the leg's access-side endpoint on the edge.
    :param public: the latched endpoint (the box's public mapping).
    """

    server: Endpoint
    core: Endpoint
    access: Endpoint
    public: Endpoint

    def core_element(self) -> Element:
        """``core`` map: server address . core port -> public . access."""
        key = socket.inet_pton(socket.AF_INET, self.server.host)
        key += _FIELD_PORT.pack(self.core.port)
        return Element(key, _pack(self.public, self.access))

    def access_element(self) -> Element:
        """``access`` map: public . access port -> server . core."""
        key = _pack(self.public) + _FIELD_PORT.pack(self.access.port)
        return Element(key, _pack(self.server, self.core))

    def map_elements(self) -> list[tuple[str, Element]]:
        """The two map elements with their map names."""
        return [
            (CORE_MAP, self.core_element()),
            (ACCESS_MAP, self.access_element()),
        ]

    def box_tuple(self) -> FlowTuple:
        """The box's punch; once installed, also the leg's NATed entry.

        The kernel finds an entry by either of its tuples, and this one is
        the NATed entry's reply tuple when the server sent first and its
        original tuple when the box did: it is the one tuple needed to read
        the leg's counters and to delete the entry at removal, whatever port
        the server sends from.
        """
        return FlowTuple(self.public, self.access)

    def conntrack_tuples(self) -> tuple[FlowTuple, FlowTuple]:
        """The exact tuples to delete right after an install.

        The box's punch (:meth:`box_tuple`) and the server's media as it
        reached the edge's core socket before the install (stale entry).
        """
        return self.box_tuple(), FlowTuple(self.server, self.core)


def tuple_from_core_element(element: Element) -> FlowTuple:
    """The box-side tuple of a ``core`` map element (for reconciliation)."""
    value = element.value or b""
    return FlowTuple(_unpack(value, 0), _unpack(value, 8))


def tuple_from_access_element(element: Element) -> FlowTuple:
    """The server-side tuple of an ``access`` map element."""
    value = element.value or b""
    return FlowTuple(_unpack(value, 0), _unpack(value, 8))


@attrs.frozen
class NatTable:
    """What the ruleset depends on: the table name and the edge addresses."""

    name: str
    access_address: str
    core_address: str


@attrs.frozen
class Batch:
    """Encoded messages and the sequence numbers to wait for.

    :param begin: the batch header's sequence number, 0 outside a batch.
    :param requests: the messages that the kernel answers.
    """

    data: bytes
    requests: tuple[int, ...]
    begin: int = 0


class BatchWriter:
    """Collects nftables messages into one transaction.

    The kernel applies all of it or none of it, and acknowledges each
    message (NLM_F_ACK) so that a failure names the message it hit.

    :param next_seq: gives each message its sequence number.
    """

    def __init__(self, next_seq: Callable[[], int]) -> None:
        self._next_seq = next_seq
        self._begin = next_seq()
        self._parts = [self._frame(NFNL_MSG_BATCH_BEGIN, self._begin)]
        self._requests: list[int] = []

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, msg_type: int, flags: int, body: bytes) -> int:
        """Append one message; ``body`` is its attributes."""
        seq = self._next_seq()
        kind = NFNL_SUBSYS_NFTABLES << 8 | msg_type
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self._parts.append(nfgen_message(kind, flags, seq, NFPROTO_IPV4, body))
        self._requests.append(seq)
        return seq

    def add_pyroute2(self, msg: Any, msg_type: int, flags: int) -> int:
        """Append a pyroute2 message object, encoding it with its own codec."""
        seq = self._next_seq()
        msg["header"]["type"] = NFNL_SUBSYS_NFTABLES << 8 | msg_type
        msg["header"]["flags"] = flags | NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg["nfgen_family"] = NFPROTO_IPV4
        msg.encode()
        self._parts.append(bytes(msg.data))
        self._requests.append(seq)
        return seq

    def finish(self) -> Batch:
        """Close the batch; the writer is spent."""
        self._parts.append(self._frame(NFNL_MSG_BATCH_END, self._next_seq()))
        return Batch(b"".join(self._parts), tuple(self._requests), self._begin)

    @staticmethod
    def _frame(msg_type: int, seq: int) -> bytes:
        return nfgen_message(
            msg_type, NLM_F_REQUEST, seq, 0, b"", res_id=NFNL_SUBSYS_NFTABLES
        )


def _element_attribute(element: Element) -> bytes:
    parts = [nest(NFTA_SET_ELEM_KEY, nla(NFTA_DATA_VALUE, element.key))]
    if element.value is not None:
        parts.append(nest(NFTA_SET_ELEM_DATA, nla(NFTA_DATA_VALUE, element.value)))
    return nest(NFTA_LIST_ELEM, *parts)


def _element_lists(
    table: str, set_name: str, elements: Iterable[Element]
) -> Iterator[bytes]:
    """Message bodies carrying ``elements``, split where a list would outgrow
    its 16-bit attribute length."""
    head = nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    head += nla(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
    chunk: list[bytes] = []
    size = 0
    for element in elements:
        packed = _element_attribute(element)
        if size + len(packed) > NLA_MAX_PAYLOAD:
            yield head + nest(NFTA_SET_ELEM_LIST_ELEMENTS, *chunk)
            chunk, size = [], 0
        chunk.append(packed)
        size += len(packed)
    if chunk:
        yield head + nest(NFTA_SET_ELEM_LIST_ELEMENTS, *chunk)


def add_elements(
    writer: BatchWriter, table: str, set_name: str, elements: Iterable[Element]
) -> list[int]:
    """Append NEWSETELEM messages; an element that exists fails (EEXIST)."""
    flags = NLM_F_CREATE | NLM_F_EXCL
    return [
        writer.add(NFT_MSG_NEWSETELEM, flags, body)
        for body in _element_lists(table, set_name, elements)
    ]


def delete_elements(
    writer: BatchWriter, table: str, set_name: str, elements: Iterable[Element]
) -> list[int]:
    """Append DELSETELEM messages; an element that is missing fails (ENOENT)."""
    return [
        writer.add(NFT_MSG_DELSETELEM, 0, body)
        for body in _element_lists(table, set_name, elements)
    ]


def get_elements_message(seq: int, table: str, set_name: str) -> bytes:
    """GETSETELEM dump of a whole set, outside any batch.

    The kernel answers with NEWSETELEM messages of many elements each, then
    NLMSG_DONE; ENOENT when the table or the set does not exist.
    """
    kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM
    head = nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    head += nla(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return nfgen_message(kind, flags, seq, NFPROTO_IPV4, head)


def decode_elements(payload: bytes) -> list[Element]:
    """The elements of one NEWSETELEM message the kernel sent back.

    ``payload`` starts with the nfgen header, as
    :attr:`~hostednat.nat.netlink.Reply.messages` hold it.
    """
    found = []
    top = attribute_map(memoryview(payload)[4:])
    for _kind, packed in attributes(top.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
        fields = attribute_map(packed)
        key = bytes(attribute_map(fields[NFTA_SET_ELEM_KEY])[NFTA_DATA_VALUE])
        value = None
        if NFTA_SET_ELEM_DATA in fields:
            value = bytes(attribute_map(fields[NFTA_SET_ELEM_DATA])[NFTA_DATA_VALUE])
        found.append(Element(key, value))
    return found


# The ruleset, built with pyroute2's declarative message classes.


def _expr(name: str, **data: Any) -> dict[str, Any]:
    prefix = f"NFTA_{name.upper()}_"
    fields = [(prefix + key.upper(), value) for key, value in data.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": fields})]}


def _value(data: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", data)]}


def _payload(base: int, offset: int, length: int, dreg: int) -> dict[str, Any]:
    return _expr("payload", dreg=dreg, base=base, offset=offset, len=length)


def _ct(key: int, dreg: int) -> dict[str, Any]:
    return _expr("ct", dreg=dreg, key=key, direction=_IP_CT_DIR_ORIGINAL)


def _equals(data: bytes) -> dict[str, Any]:
    return _expr("cmp", sreg=_REG_1, op=0, data=_value(data))


def _udp() -> list[dict[str, Any]]:
    return [
        _expr("meta", dreg=_REG_1, key=_NFT_META_L4PROTO),
        _equals(bytes([_IPPROTO_UDP])),
    ]


def _lookup(set_name: str, mapped: bool) -> dict[str, Any]:
    if mapped:
        return _expr("lookup", set=set_name, sreg=_REG_1, dreg=_REG_1)
    return _expr("lookup", set=set_name, sreg=_REG_1)


def _nat(kind: int, address_reg: int, port_reg: int) -> dict[str, Any]:
    return _expr(
        "nat",
        type=kind,
        family=NFPROTO_IPV4,
        reg_addr_min=address_reg,
        reg_proto_min=port_reg,
    )


def _rules(spec: NatTable) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each rule as (chain, expressions), in nft's own register layout."""
    core = socket.inet_pton(socket.AF_INET, spec.core_address)
    access = socket.inet_pton(socket.AF_INET, spec.access_address)
    net, transport = _NFT_PAYLOAD_NETWORK_HEADER, _NFT_PAYLOAD_TRANSPORT_HEADER
    ip_daddr = _payload(net, 16, 4, _REG_1)
    ip_saddr = _payload(net, 12, 4, _REG_1)
    return [
        # ip daddr CORE ip saddr . udp dport -> dnat to first half of @core
        (
            "prerouting",
            [
                *_udp(),
                ip_daddr,
                _equals(core),
                ip_saddr,
                _payload(transport, 2, 2, _REG32_01),
                _lookup(CORE_MAP, True),
                _nat(_NFT_NAT_DNAT, _REG_1, _REG32_01),
            ],
        ),
        # ip daddr ACCESS ip saddr . udp sport . udp dport -> first half of @access
        (
            "prerouting",
            [
                *_udp(),
                ip_daddr,
                _equals(access),
                ip_saddr,
                _payload(transport, 0, 2, _REG32_01),
                _payload(transport, 2, 2, _REG32_02),
                _lookup(ACCESS_MAP, True),
                _nat(_NFT_NAT_DNAT, _REG_1, _REG32_01),
            ],
        ),
        # ct original (daddr CORE; saddr . proto-dst) -> snat to second half
        (
            "postrouting",
            [
                *_udp(),
                _ct(_NFT_CT_DST_IP, _REG_1),
                _equals(core),
                _ct(_NFT_CT_SRC_IP, _REG_1),
                _ct(_NFT_CT_PROTO_DST, _REG32_01),
                _lookup(CORE_MAP, True),
                _nat(_NFT_NAT_SNAT, _REG32_02, _REG32_03),
            ],
        ),
        # ct original (daddr ACCESS; saddr . proto-src . proto-dst) -> snat
        (
            "postrouting",
            [
                *_udp(),
                _ct(_NFT_CT_DST_IP, _REG_1),
                _equals(access),
                _ct(_NFT_CT_SRC_IP, _REG_1),
                _ct(_NFT_CT_PROTO_SRC, _REG32_01),
                _ct(_NFT_CT_PROTO_DST, _REG32_02),
                _lookup(ACCESS_MAP, True),
                _nat(_NFT_NAT_SNAT, _REG32_02, _REG32_03),
            ],
        ),
        # Never run (the chain has no hook): loading it turns accounting on.
        (
            ACCOUNTING_CHAIN,
            [
                _expr("ct", dreg=_REG_1, key=_NFT_CT_PKTS),
                _expr("cmp", sreg=_REG_1, op=_NFT_CMP_NEQ, data=_value(bytes(8))),
            ],
        ),
    ]


def _set_message(spec: NatTable, name: str, set_id: int) -> Any:
    two_endpoints = _concat_type(_IPV4_ADDR, _INET_SERVICE, _IPV4_ADDR, _INET_SERVICE)
    keys = {
        CORE_MAP: (_concat_type(_IPV4_ADDR, _INET_SERVICE), 8),
        ACCESS_MAP: (_concat_type(_IPV4_ADDR, _INET_SERVICE, _INET_SERVICE), 12),
    }
    key_type, key_len = keys[name]
    fields: list[tuple[str, Any]] = [
        ("NFTA_SET_TABLE", spec.name),
        ("NFTA_SET_NAME", name),
        ("NFTA_SET_KEY_TYPE", key_type),
        ("NFTA_SET_KEY_LEN", key_len),
        ("NFTA_SET_ID", set_id),
        ("NFTA_SET_FLAGS", {"NFT_SET_MAP"}),
        ("NFTA_SET_DATA_TYPE", two_endpoints),
        ("NFTA_SET_DATA_LEN", 16),
    ]
    msg = nft_set_msg()
    msg["attrs"] = fields
    return msg


def _chain_message(spec: NatTable, name: str, hook: int, priority: int) -> Any:
    """A base chain of type nat with policy accept."""
    msg = nft_chain_msg()
    msg["attrs"] = [
        ("NFTA_CHAIN_TABLE", spec.name),
        ("NFTA_CHAIN_NAME", name),
        (
            "NFTA_CHAIN_HOOK",
            {
                "attrs": [
                    ("NFTA_HOOK_HOOKNUM", hook),
                    ("NFTA_HOOK_PRIORITY", priority),
                ]
            },
        ),
        ("NFTA_CHAIN_TYPE", "nat"),
        ("NFTA_CHAIN_POLICY", 1),
    ]
    return msg


def _regular_chain_message(spec: NatTable, name: str) -> Any:
    """A chain with no hook: it runs only when a rule jumps to it."""
    msg = nft_chain_msg()
    msg["attrs"] = [("NFTA_CHAIN_TABLE", spec.name), ("NFTA_CHAIN_NAME", name)]
    return msg


def create_table(writer: BatchWriter, spec: NatTable) -> None:
    """Append the messages that create the table, its maps, chains and rules.

    The table must not exist yet (EEXIST otherwise).
    """
    table = nft_table_msg()
    table["attrs"] = [("NFTA_TABLE_NAME", spec.name)]
    writer.add_pyroute2(table, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL)
    for set_id, name in enumerate(MAPS, start=1):
        msg = _set_message(spec, name, set_id)
        writer.add_pyroute2(msg, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL)
    chains = [
        _chain_message(spec, "prerouting", _HOOK_PREROUTING, -100),
        _chain_message(spec, "postrouting", _HOOK_POSTROUTING, 100),
        _regular_chain_message(spec, ACCOUNTING_CHAIN),
    ]
    for msg in chains:
        writer.add_pyroute2(msg, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL)
    for chain, expressions in _rules(spec):
        rule = nft_rule_msg()
        rule["attrs"] = [
            ("NFTA_RULE_TABLE", spec.name),
            ("NFTA_RULE_CHAIN", chain),
            ("NFTA_RULE_EXPRESSIONS", expressions),
        ]
        writer.add_pyroute2(rule, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND)


def delete_table(writer: BatchWriter, name: str) -> int:
    """Append DELTABLE: the table with all its sets, elements and chains."""
    return writer.add(NFT_MSG_DELTABLE, 0, nla(NFTA_TABLE_NAME, name.encode() + b"\0"))
