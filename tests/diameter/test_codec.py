"""Framing, the dictionary additions and message round trips."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostednat.diameter import codec, messages
from hostednat.diameter.dictionary import VENDOR_ETSI, AvpCodeEtsi
from hostednat.diameter.messages import TransportAddress

from .helpers import AF


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
