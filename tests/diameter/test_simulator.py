"""The simulated SPDF's admission policy, without the network."""

from __future__ import annotations

from typing import Any

from hostednat.diameter import codec, messages
from hostednat.diameter.dictionary import FlowStatus
from hostednat.diameter.messages import AaRequest, MediaComponent, TransportAddress
from hostednat.diameter.results import Result
from hostednat.diameter.simulator.config import (
    BindingOutput,
    SimulatorConfig,
    Subscriber,
)
from hostednat.diameter.simulator.spdf import SpdfPolicy

from .helpers import AF, SPDF

BOX = "203.0.113.7"


def aar(session_id: str, bandwidth: int, box: str = BOX) -> tuple[Any, Any]:
    request = AaRequest(
        session_id,
        (MediaComponent(1, bandwidth_dl=bandwidth, flow_status=FlowStatus.ENABLED),),
        subscriber=box,
        binding_input=(TransportAddress(box, 5000), TransportAddress.wildcard()),
    )
    data = codec.with_identifiers(messages.aa_request(request, AF, "racs"), 1, 2)
    return codec.parse_header(data), codec.decode(data)


def result(policy: SpdfPolicy, request: tuple[Any, Any]) -> tuple[Result, Any]:
    answer = codec.decode(policy.handle("af-1", *request))
    found = messages.result_of(answer.avps)
    assert found is not None
    return found, answer


def test_budget_per_subscriber_and_total() -> None:
    """Sessions pass until the subscriber (4046) or total (4041) budget."""
    policy = SpdfPolicy(
        SimulatorConfig(subscriber_bandwidth=10, total_bandwidth=15), SPDF
    )
    assert result(policy, aar("a", 6))[0] == Result(0, 2001)
    assert result(policy, aar("b", 6))[0] == Result(13019, 4046)
    assert result(policy, aar("c", 10, "203.0.113.9"))[0] == Result(13019, 4041)
    assert policy.used() == 6


def test_update_replaces_component_bandwidth() -> None:
    """An update AAR for the same component replaces its bandwidth."""
    policy = SpdfPolicy(SimulatorConfig(subscriber_bandwidth=10), SPDF)
    result(policy, aar("a", 6))
    assert result(policy, aar("a", 9))[0] == Result(0, 2001)
    assert policy.used(BOX) == 9


def test_forced_result_code() -> None:
    """A subscriber with a forced code always gets it."""
    config = SimulatorConfig(
        subscribers=(Subscriber(BOX, result_code=4045, vendor_id=13019),)
    )
    assert result(SpdfPolicy(config, SPDF), aar("a", 1))[0] == Result(13019, 4045)


def test_binding_output_list_is_allocated() -> None:
    """With [binding_output] the AAA returns one pair per input pair."""
    config = SimulatorConfig(
        binding_output=BindingOutput("192.0.2.50", "198.51.100.20", 40000, 40003)
    )
    _, answer = result(SpdfPolicy(config, SPDF), aar("a", 1))
    assert messages.binding_lists(answer.avps)[1] == (
        TransportAddress("192.0.2.50", 40000),
        TransportAddress("198.51.100.20", 40000),
    )


def test_str_releases_and_unknown_str_is_5002() -> None:
    """STR frees the bandwidth; an STR for no session is answered 5002."""
    policy = SpdfPolicy(SimulatorConfig(), SPDF)
    result(policy, aar("a", 5))
    data = messages.session_termination_request(AF, "a", 1, "racs")
    data = codec.with_identifiers(data, 3, 4)
    request = (codec.parse_header(data), codec.decode(data))
    assert result(policy, request)[0] == Result(0, 2001)
    assert policy.used() == 0
    assert result(policy, request)[0] == Result(0, 5002)


def test_tap_builds_diameter_and_admin_listeners() -> None:
    """twistd hostednat-spdf's options load conf/spdf.toml; both ports listen."""
    from pathlib import Path

    from twisted.internet.testing import MemoryReactorClock

    from hostednat.diameter.simulator.service import build_service
    from hostednat.diameter.simulator.tap import Options

    options = Options()
    options.parseOptions(
        ["--config", str(Path(__file__).parents[2] / "conf" / "spdf.toml")]
    )
    reactor = MemoryReactorClock()
    service, spdf = build_service(options["parsed"], reactor)
    service.startService()
    ports = sorted(port for port, *_ in reactor.tcpServers)
    assert ports == [3868, 8868]
    assert spdf.identity.application_id == 16777222
    service.stopService()


def test_unsupported_request_gets_3001_and_logs_no_decision() -> None:
    """A RAR sent to the SPDF is refused 3001 and never reported as a decision."""
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from hostednat.diameter.simulator.service import Spdf

    spdf = Spdf(SimulatorConfig(), Clock())
    answers: list[bytes] = []
    driver: Any = type(
        "Driver",
        (),
        {
            "group": type("Group", (), {"peers": [type("Peer", (), {"name": "af-1"})]}),
            "on_request": None,
            "answer": lambda self, peer, data: answers.append(data),
        },
    )()
    spdf._connected(driver)
    decisions: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("hostednat_event") == "spdf.decision":
            decisions.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        driver.on_request("af-1", *aar("a", 5))
        data = codec.with_identifiers(
            messages.re_auth_request(AF, "a", "racs", "spdf"), 3, 4
        )
        driver.on_request("af-1", codec.parse_header(data), codec.decode(data))
    finally:
        globalLogPublisher.removeObserver(observe)

    assert [event["command"] for event in decisions] == [265]
    assert messages.result_of(codec.decode(answers[-1]).avps) == Result(0, 3001)
    assert spdf.policy.last_decision is None


def test_aaa_has_no_binding_information_without_binding_output() -> None:
    """Without [binding_output] the AAA carries no Binding-Information."""
    _, answer = result(SpdfPolicy(SimulatorConfig(), SPDF), aar("a", 1))
    assert messages.binding_lists(answer.avps) == ((), ())
