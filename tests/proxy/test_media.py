"""The hosted-NAT rewrite of Transport headers (reference 6.4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hostednat.nat.binding import Binding, BindingRequest, Endpoint, PortPair
from hostednat.proxy.media import answer_to_box, plan_setup, server_endpoints
from hostednat.rtsp.transport import HostPort, parse_transport

BOX = "192.0.2.7"


def binding(single: bool = False) -> Binding:
    request = BindingRequest(BOX, PortPair(5000, None if single else 5001))
    return Binding(
        "b1",
        request,
        "198.51.100.1",
        "203.0.113.1",
        PortPair(30000, None if single else 30001),
        PortPair(40000, None if single else 40001),
    )


def test_rtsp2_dest_addr_is_rewritten_both_ways() -> None:
    """RTSP 2.0: dest_addr points at the core; the answer gets src_addr."""
    plan = plan_setup(
        parse_transport('RTP/AVP/UDP;unicast;dest_addr=":5000"/":5001"'), BOX
    )
    assert plan.box_ports == PortPair(5000, 5001)
    towards_server = parse_transport(plan.for_server(binding(), False))[0]
    assert towards_server.dest_addr == [
        HostPort("203.0.113.1", 40000),
        HostPort("203.0.113.1", 40001),
    ]
    answer = parse_transport(
        'RTP/AVP/UDP;unicast;dest_addr="203.0.113.1:40000"/"203.0.113.1:40001";'
        'src_addr="203.0.113.10:6970"/"203.0.113.10:6971";ssrc=0A0B0C0D'
    )[0]
    assert server_endpoints(answer, "203.0.113.99") == (
        Endpoint("203.0.113.10", 6970),
        Endpoint("203.0.113.10", 6971),
    )
    to_box = parse_transport(answer_to_box(answer, plan, binding()))[0]
    assert to_box.dest_addr == [HostPort(None, 5000), HostPort(None, 5001)]
    assert to_box.src_addr == [
        HostPort("198.51.100.1", 30000),
        HostPort("198.51.100.1", 30001),
    ]
    assert to_box.ssrc == "0A0B0C0D"


def test_first_udp_unicast_is_chosen_and_later_ones_dropped() -> None:
    """Only one UDP alternative gets the binding; TCP ones are kept."""
    specs = parse_transport(
        "RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=5000-5001,"
        " RTP/AVP;unicast;client_port=6000-6001, RTP/AVP;multicast;ttl=4"
    )
    plan = plan_setup(specs, BOX)
    assert plan.nat_index == 1
    assert plan.for_server(binding(), False) == (
        "RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=40000-40001"
    )


def test_send_destination_names_the_core_address() -> None:
    """With send_destination the server is told the core address explicitly."""
    plan = plan_setup(parse_transport("RTP/AVP;unicast;client_port=5000-5001"), BOX)
    value = plan.for_server(binding(), True)
    assert parse_transport(value)[0].destination == "203.0.113.1"


def test_answer_without_source_gets_the_access_address() -> None:
    """The box is always told the access address as the media source."""
    plan = plan_setup(parse_transport("RTP/AVP;unicast;client_port=5000-5001"), BOX)
    answer = parse_transport(
        "RTP/AVP;unicast;client_port=40000-40001;server_port=6970-6971;"
        "source=203.0.113.10;x-vendor=1"
    )[0]
    text = answer_to_box(answer, plan, binding())
    assert text == (
        "RTP/AVP;unicast;client_port=5000-5001;server_port=30000-30001;"
        "source=198.51.100.1;x-vendor=1"
    )


addresses = st.sampled_from([BOX, "198.51.100.99", "203.0.113.5", "10.0.0.1"])
ports = st.integers(1024, 65000).map(lambda p: p - p % 2)


@st.composite
def box_transports(draw: st.DrawFn) -> str:
    specs = []
    for _ in range(draw(st.integers(1, 3))):
        lower = draw(st.sampled_from(["", "/UDP", "/TCP"]))
        port = draw(ports)
        params = [f"RTP/AVP{lower}", draw(st.sampled_from(["unicast", "multicast"]))]
        if draw(st.booleans()):
            params.append(f"destination={draw(addresses)}")
        if draw(st.booleans()):
            params.append(f'dest_addr="{draw(addresses)}:{port}"')
        params.append(f"client_port={port}-{port + 1}")
        specs.append(";".join(params))
    return ", ".join(specs)


@given(box_transports())
def test_no_third_party_address_ever_reaches_the_server(value: str) -> None:
    """Whatever the box sends, no third-party or multicast UDP goes upstream."""
    plan = plan_setup(parse_transport(value), BOX)
    forwarded = plan.for_server(binding(), False) if plan.hosted else plan.passthrough()
    for spec in parse_transport(forwarded) if forwarded else []:
        assert spec.destination in (None, BOX)
        for entry in spec.dest_addr or []:
            assert entry.host in (None, BOX, "203.0.113.1")
        assert spec.lower_transport == "TCP" or not spec.is_multicast
