"""Framing, the dictionary additions and message round trips."""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import pytest
from diameter.message import Message
from diameter.message.avp import Avp, AvpGrouped
from diameter.message.packer import Unpacker
from hypothesis import given
from hypothesis import strategies as st

from hostednat.diameter import codec, messages
from hostednat.diameter.dictionary import (
    VENDOR_ETSI,
    AvpCodeEtsi,
    FlowStatus,
    FlowUsage,
    LatchingIndication,
)
from hostednat.diameter.messages import (
    AaRequest,
    MediaComponent,
    MediaSubComponent,
    TransportAddress,
)
from hostednat.diameter.results import Result

from .helpers import AF, SPDF


@pytest.mark.parametrize(
    ("code", "name", "mandatory"),
    [
        (AvpCodeEtsi.BINDING_INFORMATION, "Binding-Information", False),
        (AvpCodeEtsi.LATCHING_INDICATION, "Latching-Indication", False),
        (AvpCodeEtsi.RESERVATION_PRIORITY, "Reservation-Priority", False),
        (AvpCodeEtsi.SERVICE_CLASS, "Service-Class", False),
        (AvpCodeEtsi.OVERBOOKING_INDICATOR, "Overbooking-Indicator", False),
        (AvpCodeEtsi.AUTHORIZATION_PACKAGE_ID, "Authorization-Package-Id", False),
        (AvpCodeEtsi.GLOBALLY_UNIQUE_ADDRESS, "Globally-Unique-Address", True),
    ],
)
def test_etsi_entries_registered(code: int, name: str, mandatory: bool) -> None:
    """ETSI AVPs carry TS 183 017 names, the V flag and the D9 M flag."""
    avp = codec.new_avp(
        code,
        VENDOR_ETSI,
        1 if code in (457, 458, 460) else ("x" if code in (459, 461) else []),
    )
    decoded = codec.decode(codec.encode(265, 0xC0, 16777222, [avp])).avps[0]
    assert decoded.name == name
    assert decoded.vendor_id == VENDOR_ETSI
    assert bool(decoded.flags & 0x40) is mandatory


def test_framer_splits_and_joins() -> None:
    """Messages cut anywhere in the stream come out whole and in order."""
    one = messages.device_watchdog_request(AF)
    two = messages.disconnect_peer_request(AF, 0)
    stream = one + two
    framer = codec.Framer()
    out = []
    for index in range(0, len(stream), 7):
        out += framer.feed(stream[index : index + 7])
    assert out == [one, two]


@pytest.mark.parametrize(
    "head", [b"\x02\x00\x00\x14", b"\x01\x00\x00\x10", b"\x01\xff\xff\xff"]
)
def test_framer_rejects_bad_headers(head: bytes) -> None:
    """Wrong version, short length and oversize length are refused."""
    with pytest.raises(codec.FramingError):
        codec.Framer().feed(head + bytes(16))


@given(
    st.lists(
        st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535)),
        min_size=0,
        max_size=4,
    )
)
def test_binding_lists_round_trip(pairs: list[tuple[str, int]]) -> None:
    """Binding-Input/Output-List survive encoding and decoding."""
    addresses = tuple(TransportAddress(h, p) for h, p in pairs)
    info = messages.binding_information(addresses, addresses)
    message = codec.decode(codec.encode(265, 0, 16777222, [info]))
    assert messages.binding_lists(message.avps) == (addresses, addresses)


def test_ipv6_transport_address_round_trip() -> None:
    """IPv6 elements use V6-Transport-Address with a /128 prefix."""
    pair = (TransportAddress("2001:db8::7", 5000), TransportAddress.wildcard("::1"))
    info = messages.binding_information(pair)
    message = codec.decode(codec.encode(265, 0, 16777222, [info]))
    assert messages.binding_lists(message.avps) == (pair, ())
    assert "V6-Transport-Address" in "\n".join(codec.describe(message.avps))


def test_identifiers_patch_and_t_flag() -> None:
    """with_identifiers rewrites both ids and can set the T flag."""
    data = codec.with_identifiers(messages.device_watchdog_request(AF), 5, 6, True)
    header = codec.parse_header(data)
    assert (header.hop_by_hop_id, header.end_to_end_id) == (5, 6)
    assert header.is_retransmit and header.is_request


def test_session_ids_are_unique_and_prefixed() -> None:
    """Session-Ids follow <host>;<boot>;<counter> (RFC 6733 8.8)."""
    factory = messages.SessionIdFactory("af1.example.net", 1718000000)
    assert factory.next() == "af1.example.net;1718000000;1"
    assert factory.next("rtsp") == "af1.example.net;1718000000;2;rtsp"


def test_core_modules_do_not_import_twisted_internet() -> None:
    """codec, messages, peer, results and config stay free of the reactor."""
    code = (
        "import sys\n"
        "import hostednat.diameter.group, hostednat.diameter.config\n"
        "import hostednat.diameter.simulator.spdf\n"
        "assert not any(m.startswith('twisted.internet') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('twisted'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- decoding with split_avps, against the library's own decoder -------------


def _tree(avps: list[Any]) -> list[tuple[Any, ...]]:
    """Code, vendor, flags, name, type name, payload and members of each AVP."""
    found = []
    for avp in avps:
        members = _tree(avp.value) if isinstance(avp, AvpGrouped) else None
        kind = "Grouped" if members is not None else type(avp).__name__
        found.append(
            (avp.code, avp.vendor_id, avp.flags, avp.name, kind, avp.payload, members)
        )
    return found


def _aar() -> bytes:
    request = AaRequest(
        "af.iptv.example.net;1;7",
        (
            MediaComponent(
                1,
                (MediaSubComponent(1), MediaSubComponent(2, FlowUsage.RTCP)),
                media_type=1,
                bandwidth_dl=8_000_000,
                flow_status=FlowStatus.ENABLED,
            ),
        ),
        subscriber="203.0.113.7",
        address_realm=b"access.example.net",
        binding_input=(
            TransportAddress("203.0.113.7", 5000),
            TransportAddress.wildcard(),
        ),
        latching=LatchingIndication.LATCH,
        specific_actions=(2, 3, 4, 6, 7),
        af_charging_identifier=b"s1",
        service_class="IPTV",
    )
    return messages.aa_request(request, AF, "racs.example.net")


MESSAGES = {
    "aar": _aar(),
    "cer": messages.capabilities_exchange_request(AF, ["192.0.2.10", "2001:db8::10"]),
    "aaa with binding output": messages.aa_answer(
        codec.parse_header(_aar()),
        SPDF,
        "af.iptv.example.net;1;7",
        Result(13019, 4046),
        (TransportAddress("203.0.113.7", 5000), TransportAddress.wildcard()),
        (TransportAddress("192.0.2.50", 40000), TransportAddress("::", 0)),
    ),
    "asr": messages.abort_session_request(AF, "s;1", "iptv", "af", 1),
    "unknown command and avp": codec.encode(
        0x7FFFF0,
        0x80,
        0,
        [codec.new_avp(263, 0, "s;2"), Avp(0x7FFF1234, 99, b"z", 0xC0)],
    ),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_decode_matches_the_library_avp_for_avp(name: str) -> None:
    """decode builds the same AVP classes, names, flags and payloads as the library."""
    data = MESSAGES[name]
    ours = codec.decode(data)
    theirs = Message.from_bytes(data, plain_msg=True)
    assert _tree(ours.avps) == _tree(theirs.avps)
    assert ours.header.command_code == theirs.header.command_code
    assert ours.header.length == theirs.header.length == len(data)


def test_unknown_avp_decodes_as_plain_avp_named_unknown() -> None:
    """An AVP the dictionary lacks keeps its bytes, as the library's ``Avp``."""
    raw = struct.pack("!IIIs3x", 0x7FFF1234, (0xC0 << 24) | 13, 99, b"z")
    (avp,) = codec.split_avps(raw)
    assert (type(avp), avp.name, avp.vendor_id, avp.payload) == (
        Avp,
        "Unknown",
        99,
        b"z",
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from([(263, 0), (268, 0), (455, 13019), (518, 10415), (7, 0)]),
            st.binary(max_size=9),
            st.booleans(),
        ),
        max_size=6,
    )
)
def test_split_avps_round_trips_any_leaf_sequence(
    leaves: list[tuple[tuple[int, int], bytes, bool]],
) -> None:
    """Raw leaves of any payload length come back with their code, vendor and bytes."""
    avps = []
    for (code, vendor), payload, mandatory in leaves:
        avp = Avp(code, vendor, payload, 0x40 if mandatory else 0)
        avps.append(avp)
    data = b"".join(codec.packed(avp) for avp in avps)
    decoded = codec.split_avps(data)
    assert [(a.code, a.vendor_id, a.flags, a.payload) for a in decoded] == [
        (a.code, a.vendor_id, a.flags, a.payload) for a in avps
    ]
    assert _tree(decoded) == _tree(_library_split(data))


def _library_split(data: bytes) -> list[Any]:
    """The library's own AVP walk: ``Avp.from_unpacker`` to the end."""
    unpacker = Unpacker(data)
    found = []
    while not unpacker.is_done():
        found.append(Avp.from_unpacker(unpacker))
    return found


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("header cut short", struct.pack("!I", 263)),
        ("vendor field cut", struct.pack("!II", 455, (0x80 << 24) | 16)),
        ("length below header", struct.pack("!II", 263, 4)),
        ("length past the end", struct.pack("!II", 263, 40) + b"abcd"),
        ("padding past the end", struct.pack("!II", 263, 10) + b"ab"),
    ],
)
def test_malformed_avps_are_value_errors(case: str, body: bytes) -> None:
    """Bad AVP headers or lengths make decode and children raise ValueError."""
    header = struct.pack("!IIIII", (1 << 24) | (20 + len(body)), 265, 0, 1, 2)
    with pytest.raises(ValueError, match="undecodable"):
        codec.decode(header + body)
    group = codec.GroupedAvp(517, 10415, body, 0xC0)
    with pytest.raises(ValueError):
        codec.children(group)


def test_grouped_value_assignment_encodes_like_the_library() -> None:
    """Setting a Grouped AVP's members writes the payload the library would."""
    members = [codec.new_avp(509, 10415, 1), codec.new_avp(512, 10415, 1)]
    ours = codec.GroupedAvp(519, 10415, b"", 0xC0)
    ours.value = members
    theirs = AvpGrouped(519, 10415, b"", 0xC0)
    theirs.value = members
    assert ours.payload == theirs.payload
    assert ours.value is members


# -- encoding caches ---------------------------------------------------------


def test_packed_matches_the_library_for_cached_and_fresh_avps() -> None:
    """Shared leaves, fresh leaves and groups encode as ``Avp.as_bytes`` does."""
    shared = codec.new_avp(264, 0, b"af.iptv.example.net")
    fresh = codec.new_avp(263, 0, "af;1;2", cache=False)
    group = messages.binding_information(
        (TransportAddress("203.0.113.7", 5000), TransportAddress.wildcard())
    )
    for avp in (shared, fresh, group):
        assert codec.packed(avp) == avp.as_bytes()


def test_packed_stays_right_after_the_caches_start_over() -> None:
    """An AVP kept across a cache reset still packs to its own bytes."""
    kept = codec.new_avp(455, 13019, 5000)
    expected = kept.as_bytes()
    for port in range(2 * 4096 + 10):
        codec.new_avp(455, 13019, 100_000 + port)
    assert codec.packed(kept) == expected
    assert codec.packed(codec.new_avp(455, 13019, 5000)) == expected


def test_uncached_leaves_are_not_shared() -> None:
    """cache=False builds a new AVP each time; cached leaves are shared."""
    assert codec.new_avp(263, 0, "x", cache=False) is not codec.new_avp(
        263, 0, "x", cache=False
    )
    assert codec.new_avp(296, 0, b"realm") is codec.new_avp(296, 0, b"realm")


def test_shared_avp_builds_once_per_key() -> None:
    """shared_avp calls its builder once for equal keys."""
    built: list[int] = []

    def build() -> Any:
        built.append(1)
        return codec.new_avp(518, 10415, 3)

    key = ("test_shared_avp_builds_once_per_key", 3)
    first = codec.shared_avp(key, build)
    assert codec.shared_avp(key, build) is first
    assert built == [1]


def test_requested_downlink_reads_only_components_that_ask() -> None:
    """requested_downlink maps component numbers to their downlink bandwidth."""
    request = AaRequest(
        "s;1",
        (
            MediaComponent(1, bandwidth_dl=2_000_000),
            MediaComponent(2, bandwidth_ul=64_000),
            MediaComponent(3, bandwidth_dl=64_000),
        ),
    )
    message = codec.decode(messages.aa_request(request, AF, "racs"))
    assert messages.requested_downlink(message.avps) == {1: 2_000_000, 3: 64_000}


@pytest.mark.parametrize(
    ("like", "wildcard"),
    [("203.0.113.7", "0.0.0.0"), ("2001:db8::7", "::"), ("::ffff:192.0.2.1", "::")],
)
def test_wildcard_follows_the_address_family(like: str, wildcard: str) -> None:
    """The wildcard element is 0.0.0.0 for IPv4 and :: for IPv6, port 0."""
    assert TransportAddress.wildcard(like) == TransportAddress(wildcard, 0)
    assert TransportAddress.wildcard(like).is_wildcard
