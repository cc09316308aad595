"""Tests of the Transport header model (RFC 2326 12.39, RFC 7826 18.54)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostednat.rtsp.errors import BadTransport
from hostednat.rtsp.transport import (
    HostPort,
    PortRange,
    TransportSpec,
    format_transport,
    parse_transport,
)


def one(value: str) -> TransportSpec:
    (spec,) = parse_transport(value)
    return spec


PARSES = [
    pytest.param(
        "RTP/AVP/UDP;unicast;client_port=12666-12667",
        [("RTP/AVP/UDP", [("unicast", None), ("client_port", "12666-12667")])],
        id="ffmpeg-udp",
    ),
    pytest.param(
        'RTP/AVP;unicast;client_port=1-2;server_port=3-4;ssrc=7310931C;mode="PLAY"',
        [
            (
                "RTP/AVP",
                [
                    ("unicast", None),
                    ("client_port", "1-2"),
                    ("server_port", "3-4"),
                    ("ssrc", "7310931C"),
                    ("mode", '"PLAY"'),
                ],
            )
        ],
        id="gst-reply",
    ),
    pytest.param(
        "MP2T/H2221/UDP;unicast;client_port=27392",
        [("MP2T/H2221/UDP", [("unicast", None), ("client_port", "27392")])],
        id="single-port-mp2t",
    ),
    pytest.param(
        "MP2T/RTP/UDP;unicast;client_address=192.0.2.10;client_port=4-5;mode=PLAY",
        [
            (
                "MP2T/RTP/UDP",
                [
                    ("unicast", None),
                    ("client_address", "192.0.2.10"),
                    ("client_port", "4-5"),
                    ("mode", "PLAY"),
                ],
            )
        ],
        id="zte-client-address",
    ),
    pytest.param(
        "RTP/AVP/TCP;unicast;interleaved=0-1,RTP/AVP;unicast;client_port=5000-5001;"
        'mode="PLAY,RECORD"',
        [
            ("RTP/AVP/TCP", [("unicast", None), ("interleaved", "0-1")]),
            (
                "RTP/AVP",
                [
                    ("unicast", None),
                    ("client_port", "5000-5001"),
                    ("mode", '"PLAY,RECORD"'),
                ],
            ),
        ],
        id="two-specs-comma-in-quotes",
    ),
    pytest.param(
        " RTP/AVP ; unicast ; client_port = 5000-5001 , RTP/AVP/TCP ;interleaved= 2-3 ",
        [
            ("RTP/AVP", [("unicast", None), ("client_port", "5000-5001")]),
            ("RTP/AVP/TCP", [("interleaved", "2-3")]),
        ],
        id="whitespace-tolerated",
    ),
    pytest.param(
        "RTP/AVP;unicast;;client_port=5000-5001;",
        [("RTP/AVP", [("unicast", None), ("client_port", "5000-5001")])],
        id="empty-parameters-skipped",
    ),
    pytest.param(
        "RTP/AVP;multicast;destination=233.252.0.1;port=3456-3457;ttl=16;layers=2",
        [
            (
                "RTP/AVP",
                [
                    ("multicast", None),
                    ("destination", "233.252.0.1"),
                    ("port", "3456-3457"),
                    ("ttl", "16"),
                    ("layers", "2"),
                ],
            )
        ],
        id="multicast",
    ),
    pytest.param(
        'RTP/AVPF/UDP;unicast;dest_addr=":5000"/":5001";RTCP-mux;'
        'setup=passive;connection=new;x-foo="a;b"',
        [
            (
                "RTP/AVPF/UDP",
                [
                    ("unicast", None),
                    ("dest_addr", '":5000"/":5001"'),
                    ("RTCP-mux", None),
                    ("setup", "passive"),
                    ("connection", "new"),
                    ("x-foo", '"a;b"'),
                ],
            )
        ],
        id="rtsp2-forms",
    ),
    pytest.param(
        "x-pn-tng/tcp;mode=play,x-real-rdt/udp;client_port=6970",
        [
            ("x-pn-tng/tcp", [("mode", "play")]),
            ("x-real-rdt/udp", [("client_port", "6970")]),
        ],
        id="real-networks",
    ),
    pytest.param(
        "RAW/RAW/UDP;unicast;client_port=4588;append",
        [
            (
                "RAW/RAW/UDP",
                [("unicast", None), ("client_port", "4588"), ("append", None)],
            )
        ],
        id="raw-append",
    ),
]


@pytest.mark.parametrize(("value", "expected"), PARSES)
def test_parse_table(
    value: str, expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    """Each value parses to its ids and parameters, in order, as written."""
    specs = parse_transport(value)

    assert [(spec.transport_id, spec.params) for spec in specs] == expected


@pytest.mark.parametrize(
    ("transport_id", "lower", "rtp"),
    [
        ("RTP/AVP", "UDP", True),
        ("RTP/AVP/UDP", "UDP", True),
        ("RTP/AVP/TCP", "TCP", True),
        ("rtp/avp/tcp", "TCP", True),
        ("RTP/AVPF", "UDP", True),
        ("RTP/SAVP", "UDP", True),
        ("MP2T/H2221/UDP", "UDP", False),
        ("MP2T/RTP/UDP", "UDP", True),
        ("MP2T/RTP/TCP", "TCP", True),
        ("MP2T/UDP", "UDP", False),
        ("MP2T/TCP", "TCP", False),
        ("RAW/RAW/UDP", "UDP", False),
        ("x-pn-tng/tcp", "TCP", False),
    ],
)
def test_lower_transport_and_rtp(transport_id: str, lower: str, rtp: bool) -> None:
    """The id gives the lower transport (UDP by default) and RTP-ness."""
    spec = TransportSpec(transport_id)

    assert spec.lower_transport == lower
    assert spec.is_rtp is rtp


@pytest.mark.parametrize(
    ("value", "unicast", "multicast"),
    [
        ("RTP/AVP;unicast", True, False),
        ("RTP/AVP;multicast", False, True),
        ("RTP/AVP", False, True),
        ("RTP/AVP;UNICAST", True, False),
    ],
)
def test_unicast_and_multicast(value: str, unicast: bool, multicast: bool) -> None:
    """Unicast needs the flag; without either flag 1.0 means multicast."""
    spec = one(value)

    assert spec.is_unicast is unicast
    assert spec.is_multicast is multicast


def test_typed_accessors_of_a_full_spec() -> None:
    """Every typed accessor reads its parameter, unquoted and converted."""
    spec = one(
        "RTP/AVP;unicast;destination=192.0.2.10;source=198.51.100.1;"
        "client_port=5000-5001;server_port=6000-6001;port=7000;interleaved=4-5;"
        'ssrc=0A13C760;mode="PLAY";ttl=127;layers=3;setup=actpass;'
        "connection=existing;RTCP-mux"
    )

    assert spec.destination == "192.0.2.10"
    assert spec.source == "198.51.100.1"
    assert spec.client_port == PortRange(5000, 5001)
    assert spec.server_port == PortRange(6000, 6001)
    assert spec.port == PortRange(7000)
    assert spec.interleaved == PortRange(4, 5)
    assert spec.ssrc == "0A13C760"
    assert spec.mode == "PLAY"
    assert spec.ttl == 127
    assert spec.layers == 3
    assert spec.setup == "actpass"
    assert spec.connection == "existing"
    assert spec.rtcp_mux is True


def test_absent_parameters_read_as_none() -> None:
    """Accessors of absent parameters return None (False for RTCP-mux)."""
    spec = one("RTP/AVP/TCP")

    assert spec.client_port is None
    assert spec.server_port is None
    assert spec.port is None
    assert spec.interleaved is None
    assert spec.destination is None
    assert spec.source is None
    assert spec.dest_addr is None
    assert spec.src_addr is None
    assert spec.mode is None
    assert spec.ssrc is None
    assert spec.ttl is None
    assert spec.layers is None
    assert spec.setup is None
    assert spec.connection is None
    assert spec.rtcp_mux is False


def test_get_and_has() -> None:
    """get() ignores case and unquotes; flags read None; has() tells apart."""
    spec = one('RTP/AVP;Unicast;Mode="PLAY";x-list="a"/"b"')

    assert spec.get("MODE") == "PLAY"
    assert spec.get("x-list") == '"a"/"b"'
    assert spec.get("unicast") is None
    assert spec.has("unicast")
    assert spec.get("missing") is None
    assert spec.get("missing", "fallback") == "fallback"
    assert not spec.has("missing")


def test_get_raw_keeps_quotes() -> None:
    """get_raw() returns values as written, for copying between specs."""
    spec = one('RTP/AVP;unicast;dest_addr=":5000";mode="PLAY";append')

    assert spec.get_raw("DEST_ADDR") == '":5000"'
    assert spec.get_raw("mode") == '"PLAY"'
    assert spec.get_raw("append") is None
    assert spec.get_raw("missing") is None


def test_single_port_client_port() -> None:
    """A single client_port reads as a range with no last port."""
    spec = one("MP2T/H2221/UDP;unicast;client_port=27392")

    assert spec.client_port == PortRange(27392)
    assert spec.client_port.last is None
    assert str(spec.client_port) == "27392"


def test_set_ports_replaces_in_place_and_keeps_unknowns() -> None:
    """Rewriting client_port keeps every other parameter and its place."""
    spec = one(
        "MP2T/RTP/UDP;unicast;client_address=192.0.2.10;client_port=40000-40001;"
        "x-Retrans=yes;mode=PLAY"
    )

    spec.set_ports("client_port", PortRange(30000, 30001))
    spec.set_ports("server_port", PortRange(31000, 31001))

    assert str(spec) == (
        "MP2T/RTP/UDP;unicast;client_address=192.0.2.10;client_port=30000-30001;"
        "x-Retrans=yes;mode=PLAY;server_port=31000-31001"
    )


def test_set_drops_repeats_and_remove_drops_all() -> None:
    """set() keeps one occurrence; remove() drops every one, any case."""
    spec = one("RTP/AVP;destination=192.0.2.1;unicast;Destination=192.0.2.2")

    spec.set("destination", "198.51.100.9")
    assert spec.params == [("destination", "198.51.100.9"), ("unicast", None)]

    spec.remove("DESTINATION")
    spec.remove("absent")
    assert str(spec) == "RTP/AVP;unicast"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("client_port", "70000"),
        ("interleaved", "256"),
        ("dest_addr", '":99999"'),
        ("x-evil", "1;append"),
        ("x-evil", "1,RTP/AVP"),
        ("x-evil", "a\r\nb"),
        ("bad name", "1"),
    ],
)
def test_set_refuses_values_that_do_not_fit(name: str, value: str) -> None:
    """set() refuses bad ports and values that would split the spec."""
    spec = one("RTP/AVP;unicast")

    with pytest.raises(BadTransport):
        spec.set(name, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('":5000"/":5001"', [HostPort(None, 5000), HostPort(None, 5001)]),
        ('"192.0.2.1:5000"', [HostPort("192.0.2.1", 5000)]),
        ('"[2001:db8::1]:5000"/"[2001:db8::1]:5001"',
         [HostPort("2001:db8::1", 5000), HostPort("2001:db8::1", 5001)]),
        ('"host.example"', [HostPort("host.example", None)]),
        ('"2001:db8::7"', [HostPort("2001:db8::7", None)]),
        ('"[2001:db8::7]"', [HostPort("2001:db8::7", None)]),
        ("192.0.2.1:5000/192.0.2.1:5001",
         [HostPort("192.0.2.1", 5000), HostPort("192.0.2.1", 5001)]),
    ],
)  # fmt: skip
def test_dest_addr_and_src_addr_forms(value: str, expected: list[HostPort]) -> None:
    """RTSP 2.0 address lists parse, ports alone meaning the RTSP source."""
    spec = one(f"RTP/AVP;unicast;dest_addr={value};src_addr={value}")

    assert spec.dest_addr == expected
    assert spec.src_addr == expected


def test_set_addr_list_quotes_and_brackets() -> None:
    """set_addr_list() writes quoted entries, IPv6 hosts in brackets."""
    spec = one('RTP/AVP;unicast;dest_addr=":5000"/":5001";mode=PLAY')

    spec.set_addr_list(
        "dest_addr", [HostPort("203.0.113.5", 30000), HostPort("203.0.113.5", 30001)]
    )
    spec.set_addr_list("src_addr", [HostPort("2001:db8::5", 4000), HostPort(None, 9)])

    assert str(spec) == (
        'RTP/AVP;unicast;dest_addr="203.0.113.5:30000"/"203.0.113.5:30001";'
        'mode=PLAY;src_addr="[2001:db8::5]:4000"/":9"'
    )


def test_set_addr_list_refuses_empty_list() -> None:
    """An empty address list is refused."""
    with pytest.raises(BadTransport):
        one("RTP/AVP").set_addr_list("dest_addr", [])


@pytest.mark.parametrize(
    ("text", "maximum", "expected"),
    [
        ("5000-5001", 65535, PortRange(5000, 5001)),
        ("0", 65535, PortRange(0)),
        ("65535", 65535, PortRange(65535)),
        ("0-1", 255, PortRange(0, 1)),
        ("255", 255, PortRange(255)),
    ],
)
def test_port_range_parse(text: str, maximum: int, expected: PortRange) -> None:
    """Port and channel ranges parse within their maximum and print back."""
    assert PortRange.parse(text, maximum) == expected
    assert str(expected) == text


BAD = [
    pytest.param("", id="empty"),
    pytest.param("RTP/AVP,,RTP/AVP/TCP", id="empty-spec"),
    pytest.param("RTP/AVP,", id="trailing-comma"),
    pytest.param(";unicast", id="no-id"),
    pytest.param("RTP /AVP;unicast", id="space-in-id"),
    pytest.param("RTP//AVP", id="empty-segment"),
    pytest.param("RTP/AVP;client_port=65536", id="port-over-65535"),
    pytest.param("RTP/AVP;client_port=5000-70000", id="last-port-over"),
    pytest.param("RTP/AVP;server_port=123456", id="six-digits"),
    pytest.param("RTP/AVP;client_port=5001-5000", id="backwards"),
    pytest.param("RTP/AVP;client_port=abc", id="port-not-number"),
    pytest.param("RTP/AVP;client_port", id="port-without-value"),
    pytest.param("RTP/AVP;port=-5", id="port-negative"),
    pytest.param("RTP/AVP/TCP;interleaved=256-257", id="channel-over-255"),
    pytest.param('RTP/AVP;mode="PLAY', id="unbalanced-quote"),
    pytest.param('RTP/AVP;dest_addr=":x"', id="bad-addr-port"),
    pytest.param('RTP/AVP;dest_addr=""', id="empty-addr"),
    pytest.param('RTP/AVP;dest_addr="[2001:db8::1"', id="open-bracket"),
    pytest.param("RTP/AVP;bad name=1", id="space-in-name"),
    pytest.param("RTP/AVP;=1", id="no-name"),
]


@pytest.mark.parametrize("value", BAD)
def test_garbage_raises_bad_transport(value: str) -> None:
    """Unparsable values raise BadTransport with a 400 hint."""
    with pytest.raises(BadTransport) as caught:
        parse_transport(value)

    assert caught.value.status == 400


CANONICAL = [
    "RTP/AVP/UDP;unicast;client_port=12666-12667",
    'RTP/AVP;unicast;client_port=1-2;server_port=3-4;ssrc=7310931C;mode="PLAY"',
    'RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=7D47A83B;mode="PLAY"',
    "MP2T/H2221/UDP;unicast;destination=192.0.2.10;client_port=27392;server_port=9",
    'RTP/AVP/TCP;interleaved=0-1,RTP/AVP;unicast;mode="PLAY,RECORD"',
    'RTP/SAVPF;unicast;dest_addr="[2001:db8::1]:5000"/":5001";RTCP-mux;x-y="a,b;c"',
    "x-pn-tng/tcp;mode=play",
]


@pytest.mark.parametrize("value", CANONICAL)
def test_canonical_strings_round_trip(value: str) -> None:
    """A canonical Transport value formats back to the same string."""
    assert format_transport(parse_transport(value)) == value


_TCHAR = (
    "!#$%&'*+.^_`|~-" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)
tokens = st.text(alphabet=_TCHAR, min_size=1, max_size=12)
quoted = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"'
    ),
    max_size=12,
).map(lambda text: f'"{text}"')
ports = st.integers(0, 65535)
port_ranges = st.one_of(
    ports.map(str),
    st.tuples(ports, ports).map(lambda pair: f"{min(pair)}-{max(pair)}"),
)
channels = st.integers(0, 255)
host_ports = st.one_of(
    ports.map(lambda port: f'":{port}"'),
    st.tuples(st.sampled_from(["192.0.2.1", "[2001:db8::1]", "h.example"]), ports).map(
        lambda pair: f'"{pair[0]}:{pair[1]}"'
    ),
)
checked = {
    "client_port": port_ranges,
    "server_port": port_ranges,
    "port": port_ranges,
    "interleaved": st.tuples(channels, channels).map(
        lambda pair: f"{min(pair)}-{max(pair)}"
    ),
    "dest_addr": st.lists(host_ports, min_size=1, max_size=3).map("/".join),
    "src_addr": st.lists(host_ports, min_size=1, max_size=3).map("/".join),
}
free_names = tokens.filter(lambda name: name.lower() not in checked)
params = st.one_of(
    st.tuples(free_names, st.none()),
    st.tuples(free_names, st.one_of(tokens, quoted, st.just(""))),
    st.sampled_from(sorted(checked)).flatmap(
        lambda name: st.tuples(st.just(name), checked[name])
    ),
)
transport_ids = st.one_of(
    st.sampled_from(
        ["RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP", "RTP/AVPF", "RTP/SAVP",
         "MP2T/H2221/UDP", "MP2T/RTP/UDP", "MP2T/UDP", "RAW/RAW/UDP", "x-pn-tng/tcp"]
    ),
    st.lists(tokens, min_size=1, max_size=4).map("/".join),
)  # fmt: skip
specs = st.builds(TransportSpec, transport_ids, st.lists(params, max_size=8))


@given(st.lists(specs, min_size=1, max_size=4))
def test_generated_specs_round_trip(generated: list[TransportSpec]) -> None:
    """Formatting then parsing any valid specs gives them back equal."""
    assert parse_transport(format_transport(generated)) == generated


@given(st.lists(specs, min_size=1, max_size=4))
def test_generated_strings_round_trip(generated: list[TransportSpec]) -> None:
    """A formatted value parses and formats back to the same string."""
    value = format_transport(generated)

    assert format_transport(parse_transport(value)) == value
