"""Netlink message builders against golden bytes, and pyroute2's own parser.

The golden files in ``tests/data/netlink/`` were captured from the builders
while the lab tests ran them against kernel 6.18; each says, in its comment
lines, what the bytes mean.  No root needed.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg
from pyroute2.netlink.nfnetlink.nftsocket import nft_set_elem_list_msg

from hostednat.nat.binding import Endpoint
from hostednat.nat.conntrack import (
    EntryCounts,
    FlowTuple,
    decode_entry,
    delete_message,
    get_message,
)
from hostednat.nat.kernel_nat import FlowCounts, flow_counts
from hostednat.nat.netlink import attributes, nest, nla, split_messages
from hostednat.nat.nftables import (
    BatchWriter,
    Element,
    LegFlow,
    NatTable,
    add_elements,
    create_table,
    decode_elements,
    delete_elements,
    tuple_from_access_element,
    tuple_from_core_element,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "netlink"

FLOW = LegFlow(
    server=Endpoint("203.0.113.10", 6000),
    core=Endpoint("203.0.113.1", 31000),
    access=Endpoint("198.51.100.1", 30000),
    public=Endpoint("198.51.100.2", 40000),
)


def golden(name: str) -> bytes:
    """The bytes of a golden file, comment lines left out."""
    lines = (DATA / name).read_text().splitlines()
    return bytes.fromhex("".join(x for x in lines if not x.startswith("#")))


def writer() -> BatchWriter:
    """A batch writer numbering messages from 1."""
    return BatchWriter(itertools.count(1).__next__)


def by_set(flow: LegFlow, name: str) -> list[Element]:
    """The elements of ``flow`` that go in map ``name``."""
    return [element for set_name, element in flow.map_elements() if set_name == name]


def test_install_batch_matches_golden_bytes() -> None:
    """Installing a leg is begin, two NEWSETELEM and end, byte for byte."""
    batch = writer()
    for name in ("core", "access"):
        add_elements(batch, "hostednat", name, by_set(FLOW, name))
    finished = batch.finish()
    assert finished.data == golden("install_leg.hex")
    assert finished.begin == 1
    assert finished.requests == (2, 3)


def test_remove_batch_matches_golden_bytes() -> None:
    """Removing a leg is two DELSETELEM of keys only, byte for byte."""
    batch = writer()
    for name in ("core", "access"):
        delete_elements(batch, "hostednat", name, by_set(FLOW, name))
    assert batch.finish().data == golden("remove_leg.hex")


def test_conntrack_delete_matches_golden_bytes() -> None:
    """The exact-tuple delete of the punch entry, byte for byte."""
    message = delete_message(7, FlowTuple(FLOW.public, FLOW.access))
    assert message == golden("conntrack_delete.hex")


def test_conntrack_get_matches_golden_bytes() -> None:
    """The exact-tuple get of a leg's entry, byte for byte."""
    message = get_message(9, FLOW.box_tuple())
    assert message == golden("conntrack_get.hex")


def test_conntrack_messages_without_ack_differ_only_in_flags() -> None:
    """A get or delete in the middle of a run asks for no acknowledgement."""
    for build in (get_message, delete_message):
        acked, quiet = build(9, FLOW.box_tuple(), True), build(9, FLOW.box_tuple())
        assert acked == quiet
        unacked = build(9, FLOW.box_tuple(), False)
        assert unacked[6:8] == (0x1).to_bytes(2, "little")
        assert unacked[:6] + unacked[8:] == acked[:6] + acked[8:]


def test_ruleset_matches_golden_bytes() -> None:
    """pyroute2 encodes the table, sets, chains and rules as captured."""
    batch = writer()
    create_table(batch, NatTable("hostednat", "198.51.100.1", "203.0.113.1"))
    assert batch.finish().data == golden("create_table.hex")


def test_pyroute2_parses_our_element_message() -> None:
    """pyroute2's parser reads the key and value our encoder wrote."""
    batch = writer()
    add_elements(batch, "hostednat", "core", [FLOW.core_element()])
    data = batch.finish().data
    begin_length = int.from_bytes(data[:4], "little")
    length = int.from_bytes(data[begin_length : begin_length + 4], "little")
    message = nft_set_elem_list_msg(data[begin_length : begin_length + length])
    message.decode()
    assert message.get_attr("NFTA_SET_ELEM_LIST_TABLE") == "hostednat"
    assert message.get_attr("NFTA_SET_ELEM_LIST_SET") == "core"
    (element,) = message.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS")
    key = element.get_attr("NFTA_SET_ELEM_KEY").get_attr("NFTA_DATA_VALUE")
    value = element.get_attr("NFTA_SET_ELEM_DATA").get_attr("NFTA_DATA_VALUE")
    assert key == FLOW.core_element().key
    assert value == FLOW.core_element().value


@pytest.mark.parametrize("build", [delete_message, get_message])
def test_pyroute2_parses_our_conntrack_messages(build: Any) -> None:
    """pyroute2's conntrack parser reads the tuple our encoder wrote."""
    message = nfct_msg(build(7, FlowTuple(FLOW.public, FLOW.access)))
    message.decode()
    tuple_orig = message.get_attr("CTA_TUPLE_ORIG")
    ip = tuple_orig.get_attr("CTA_TUPLE_IP")
    proto = tuple_orig.get_attr("CTA_TUPLE_PROTO")
    assert ip.get_attr("CTA_IP_V4_SRC") == "198.51.100.2"
    assert ip.get_attr("CTA_IP_V4_DST") == "198.51.100.1"
    assert proto.get_attr("CTA_PROTO_NUM") == 17
    assert proto.get_attr("CTA_PROTO_SRC_PORT") == 40000
    assert proto.get_attr("CTA_PROTO_DST_PORT") == 30000


def test_large_element_lists_split_below_the_attribute_limit() -> None:
    """2,000 elements no longer fit one 16-bit attribute: several messages."""
    flows = [
        LegFlow(
            FLOW.server, Endpoint("203.0.113.1", 2000 + n), FLOW.access, FLOW.public
        )
        for n in range(2000)
    ]
    batch = writer()
    seqs = add_elements(batch, "t", "core", [f.core_element() for f in flows])
    assert len(seqs) == 2
    messages = list(split_messages(batch.finish().data))[1:-1]
    decoded = [len(decode_elements(payload)) for _t, _f, _s, payload in messages]
    assert sum(decoded) == 2000


def entry_answer(original: FlowTuple, counts: tuple[int, int, int, int]) -> bytes:
    """An IPCTNL_MSG_CT_NEW answer as the kernel sends it for a get: the
    original tuple, then counters per direction (packets, bytes)."""
    tuple_orig = delete_message(1, original)[20:]
    orig_packets, orig_bytes, reply_packets, reply_bytes = counts
    counters = [
        nest(
            kind,
            nla(1, packets.to_bytes(8, "big")),
            nla(2, octets.to_bytes(8, "big")),
        )
        for kind, packets, octets in (
            (9, orig_packets, orig_bytes),
            (10, reply_packets, reply_bytes),
        )
    ]
    status = nla(3, (0x1BE).to_bytes(4, "big"))
    return b"\x02\x00\x00\x00" + tuple_orig + status + b"".join(counters)


def test_decode_reads_a_kernel_entry_with_counters() -> None:
    """A get's answer decodes to its original tuple and both counters."""
    server_side = FlowTuple(FLOW.server, FLOW.core)
    entry = decode_entry(entry_answer(server_side, (15, 3000, 2, 200)))
    assert entry == EntryCounts(server_side, 15, 3000, 2, 200)


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (FlowTuple(FLOW.server, FLOW.core), FlowCounts(15, 3000, 2, 200)),
        (FLOW.box_tuple(), FlowCounts(2, 200, 15, 3000)),
    ],
)
def test_counts_follow_whoever_sent_first(
    original: FlowTuple, expected: FlowCounts
) -> None:
    """The original direction is towards the box when the server sent first,
    towards the server when the box did."""
    payload = entry_answer(original, (15, 3000, 2, 200))
    assert flow_counts(FLOW, payload) == expected


def test_decode_reads_map_elements_back() -> None:
    """A NEWSETELEM dump answer gives each element's key and value."""
    element = FLOW.core_element()
    assert element.value is not None
    packed = nest(
        1,
        nest(1, nla(1, element.key)),
        nest(2, nla(1, element.value)),
    )
    payload = b"\x02\x00\x00\x0a" + nla(1, b"t\0") + nla(2, b"core\0")
    payload += nest(3, packed)
    assert decode_elements(payload) == [element]


ports = st.integers(min_value=1, max_value=65535)
ipv4 = st.ip_addresses(v=4).map(str)
endpoints = st.builds(Endpoint, ipv4, ports)


@given(st.builds(LegFlow, endpoints, endpoints, endpoints, endpoints))
def test_elements_give_back_the_tuples_to_delete(flow: LegFlow) -> None:
    """The tuples reconciliation derives from map elements are the leg's."""
    box_side, server_side = flow.conntrack_tuples()
    assert tuple_from_core_element(flow.core_element()) == box_side
    assert tuple_from_access_element(flow.access_element()) == server_side


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (nla(1, b"ab"), [(1, b"ab")]),
        (nla(0x8003, b"") + nla(2, b"x"), [(3, b""), (2, b"x")]),
    ],
)
def test_attribute_walker(data: bytes, expected: list[tuple[int, bytes]]) -> None:
    """Attributes come back with flag bits cleared and padding dropped."""
    assert [(kind, bytes(value)) for kind, value in attributes(data)] == expected
