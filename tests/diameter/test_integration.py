"""The AF client against the SPDF simulator over loopback TCP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody

from hostednat.diameter import messages
from hostednat.diameter.af import GqAdmission, make_admission
from hostednat.diameter.config import RacsConfig
from hostednat.diameter.peer import PeerState
from hostednat.diameter.results import Result
from hostednat.diameter.simulator.config import SimulatorConfig, Subscriber
from hostednat.diameter.simulator.service import Spdf
from hostednat.nat.binding import Endpoint, PortPair
from hostednat.proxy.admission import AdmissionRefused, StreamDescription

from .helpers import Media

pytestmark = pytest.mark.loopback

BOX = "203.0.113.7"
GREEDY = "203.0.113.8"


class RunningSpdf:
    """A simulator listening on 127.0.0.1, which can be killed and revived."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.spdf = Spdf(config, reactor)
        self.port_number = 0
        self.listening: Any = None

    def start(self) -> None:
        self.listening = reactor.listenTCP(  # type: ignore[attr-defined]
            self.port_number, self.spdf.factory, interface="127.0.0.1"
        )
        self.port_number = self.listening.getHost().port

    async def kill(self) -> None:
        await self.listening.stopListening()
        for driver in self.spdf.drivers.values():
            driver.abort()
        self.spdf.drivers.clear()


def stream(key: str, box: str = BOX, kbps: int = 8000) -> StreamDescription:
    media = Media(1, "video", 0, "RTP/AVP", ("33",), "track1", {"AS": kbps})
    return StreamDescription(
        session_key=key,
        box_address=box,
        box_ports=PortPair(5000, 5001),
        lower_transport="UDP",
        control_url="rtsp://198.51.100.80/live/track1",
        media=media,  # type: ignore[arg-type]
        media_index=1,
    )


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the reactor until it holds."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
        waited += 0.05


@pytest_twisted.async_yield_fixture
async def lab() -> AsyncIterator[
    tuple[RunningSpdf, GqAdmission, list[tuple[str, str]]]
]:
    config = SimulatorConfig(
        subscriber_bandwidth=20_000_000,
        subscribers=(Subscriber(GREEDY, bandwidth=1_000_000),),
        watchdog_interval=6.0,
    )
    running = RunningSpdf(config)
    running.start()
    racs = RacsConfig.from_mapping(
        {
            "origin_host": "af.iptv.example.net",
            "origin_realm": "iptv.example.net",
            "destination_realm": "racs.example.net",
            "address_realm": "access.example.net",
            "request_timeout": 2.0,
            "watchdog_interval": 6.0,
            "reconnect_min": 0.2,
            "reconnect_max": 0.5,
            "retry_after": 17,
            "peers": [{"host": "127.0.0.1", "port": running.port_number}],
        },
        "test.toml",
    )
    admission = make_admission(racs, reactor)
    terminated: list[tuple[str, str]] = []

    def terminate(key: str, cause: str) -> None:
        terminated.append((key, cause))
        admission.session_ended(key, cause)

    admission.attach(terminate)
    await until(lambda: admission.link.available)  # type: ignore[attr-defined]
    yield running, admission, terminated
    await admission.stop()
    peer = admission.link.group.peers[0]  # type: ignore[attr-defined]
    await until(lambda: peer.state is PeerState.STOPPED)
    await running.listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_admitted_session_is_recorded_and_released(lab: Any) -> None:
    """An admitted stream holds bandwidth at the SPDF until the STR."""
    running, admission, _ = lab
    granted = await admission.admit(stream("s1"))
    assert granted.access is None
    policy = running.spdf.policy
    (record,) = policy.sessions.values()
    assert record.subscriber == BOX
    assert record.bandwidth == round(8_000_000 * (1 + 40 / 1316))
    await admission.stream_established(stream("s1"), Endpoint("198.51.100.80", 6970))
    await admission.session_ended("s1", "teardown")
    await until(lambda: not policy.sessions)


@pytest_twisted.ensureDeferred
async def test_subscriber_over_budget_gets_453(lab: Any) -> None:
    """A stream beyond the subscriber's budget is refused with 453."""
    running, admission, _ = lab
    with pytest.raises(AdmissionRefused) as caught:
        await admission.admit(stream("s2", box=GREEDY))
    assert caught.value.status == 453
    assert caught.value.cause == "diameter-4046"
    assert not running.spdf.policy.sessions


@pytest_twisted.ensureDeferred
async def test_rar_terminates_the_session_and_sends_str(lab: Any) -> None:
    """A releasing RAR calls terminate and the SPDF then gets the STR."""
    running, admission, terminated = lab
    await admission.admit(stream("s3"))
    (session_id,) = running.spdf.policy.sessions
    _, raa = await running.spdf.send_rar(session_id)
    assert messages.result_of(raa.avps) == Result(0, 2001)
    assert terminated and terminated[0][0] == "s3"
    await until(lambda: not running.spdf.policy.sessions)


@pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning")
@pytest_twisted.ensureDeferred
async def test_admin_endpoint_sends_asr(lab: Any) -> None:
    """POST /subscribers/<ip>/asr on the admin endpoint aborts the session."""
    running, admission, terminated = lab
    await admission.admit(stream("s4"))
    site_port = reactor.listenTCP(  # type: ignore[attr-defined]
        0, _admin_site(running.spdf), interface="127.0.0.1"
    )
    try:
        url = f"http://127.0.0.1:{site_port.getHost().port}/subscribers/{BOX}/asr"
        response = await Agent(reactor).request(b"POST", url.encode())
        body = json.loads(await readBody(response))
        assert body == {"results": ["2001"]}
        assert [key for key, _ in terminated] == ["s4"]
        await until(lambda: not running.spdf.policy.sessions)
    finally:
        await site_port.stopListening()


def _admin_site(spdf: Spdf) -> Any:
    from twisted.web.server import Site

    from hostednat.diameter.simulator.service import _Admin

    return Site(_Admin(spdf))


@pytest_twisted.ensureDeferred
async def test_simulator_restart_fail_closed_then_recovers(
    lab: Any, fail_on_logged_errors: list[dict[str, Any]]
) -> None:
    """With the SPDF gone admissions get 503; once it returns they pass."""
    running, admission, _ = lab
    await admission.admit(stream("s5"))
    await running.kill()
    await until(lambda: not admission.link.available)  # type: ignore[attr-defined]
    with pytest.raises(AdmissionRefused) as caught:
        await admission.admit(stream("s6"))
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "17"}
    running.start()
    await until(lambda: admission.link.available)  # type: ignore[attr-defined]
    granted = await admission.admit(stream("s7"))
    assert granted.access is None
    logged = {e.get("hostednat_event") for e in fail_on_logged_errors}
    assert logged == {"diameter.peer.down"}
    fail_on_logged_errors.clear()
