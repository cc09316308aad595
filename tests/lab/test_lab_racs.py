"""RACS admission end to end: real clients, hostednat, and the SPDF simulator.

The lab of ``test_lab_clients.py`` plus the ``racs`` host (192.0.2.20), where
``twistd hostednat-spdf`` answers the Gq' client hostednat runs in the edge
(``[racs]`` pointing at it).  The media server announces ``b=AS`` on both
streams, so every AAR asks for downlink bandwidth; the SPDF sees the box as
the gateway's public address, 198.51.100.2 (Globally-Unique-Address).

Both twistd processes log JSON events, so the tests decide on event keys
(``racs.admitted``, ``racs.refused``, ``session.ended``,
``diameter.peer.open``...), on the media server's ``EVENT`` lines, on the
simulator's ``/sessions``, and on the edge's socket table (``ss``), never on
rendered log text.  Each test is bounded by the deadlines of its clients and
waits; the ``racs_lab`` fixture stops every process and removes every
namespace, also after a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from .checks import FFMPEG_SECONDS, MIN_FFMPEG_VIDEO_FRAMES, assert_both_streams
from .harness import EDGE_RTSP_PORT, Lab
from .processes import BackgroundProcess, events_named, wait_for_event

pytestmark = pytest.mark.lab

# b=AS of each stream: with IP/UDP/RTP overhead on 1316-byte payloads the
# AF asks about 2.06 Mbit/s of downlink per stream.
STREAM_KBPS = 2000
STREAM_DOWNLINK = round(STREAM_KBPS * 1000 * (1 + 40 / 1316))

# Below one stream's downlink: the first SETUP of the box is refused.
SMALL_BUDGET = 1_000_000

# Two streams fit in it with room to spare.
ROOMY_BUDGET = 20_000_000

# The [nat] port ranges of the edge configuration (conftest.EDGE_CONFIG).
EDGE_MEDIA_PORTS = set(range(30000, 30064)) | set(range(40000, 40064))

# Seconds of media for a session the test acts on while it plays.
LONG_SECONDS = 20

# Seconds allowed for one step that involves a peer or a process to react:
# Diameter connections, RAR round trips, TEARDOWN delivery, reconnection.
STEP_DEADLINE = 10.0

SPDF_CONFIG = """\
[spdf]
listen = "tcp:3868:interface=192.0.2.20"
origin_host = "spdf.racs.example.net"
origin_realm = "racs.example.net"
application = "gq"
total_bandwidth = 0
subscriber_bandwidth = {budget}
watchdog_interval = 6

[admin]
listen = "tcp:8868:interface=192.0.2.20"
"""

SUBSCRIBER = """
[[subscribers]]
address = "{address}"
bandwidth = {budget}
"""

# Short reconnection delays so that a returning SPDF is found within a
# second; Tw at the RFC 3539 minimum.
RACS_SECTION = """
[racs]
origin_host = "hostednat.edge.example.net"
origin_realm = "edge.example.net"
destination_realm = "racs.example.net"
request_timeout = 2.0
retry_after = 17
watchdog_interval = 6.0
reconnect_min = 0.2
reconnect_max = 1.0

[[racs.peers]]
host = "192.0.2.20"
port = 3868
"""


def spdf_config(budget: int = ROOMY_BUDGET, **subscribers: int) -> str:
    """The simulator's configuration.

    :param budget: the default per-subscriber downlink budget in bit/s.
    :param subscribers: a budget of its own per address (dots as ``_``).
    """
    text = SPDF_CONFIG.format(budget=budget)
    for name, own in subscribers.items():
        text += SUBSCRIBER.format(address=name.replace("_", "."), budget=own)
    return text


def start_chain(
    lab: Lab, edge_config: str, spdf_text: str
) -> tuple[BackgroundProcess, BackgroundProcess, BackgroundProcess]:
    """Start media server, SPDF and hostednat; wait for the Diameter peer.

    :returns: the media server, the simulator and hostednat.
    """
    media = lab.start_media_server(bandwidth_kbps=STREAM_KBPS)
    spdf = lab.start_spdf(spdf_text)
    proxy = lab.start_hostednat(edge_config + RACS_SECTION, json_events=True)
    wait_for_event(proxy, "diameter.peer.open", STEP_DEADLINE)
    return media, spdf, proxy


def spdf_sessions(lab: Lab) -> list[dict[str, Any]]:
    """The sessions the simulator holds, from its admin endpoint."""
    status, body = lab.spdf_admin("GET", "/sessions")
    assert status == 200, body
    sessions: list[dict[str, Any]] = body["sessions"]
    return sessions


def eventually(
    condition: Callable[[], bool], what: str, deadline: float = STEP_DEADLINE
) -> None:
    """Poll a condition until it holds.

    :param condition: checked every 0.1 s.
    :param what: the expectation, for the failure message.
    :param deadline: seconds before the test fails.
    """
    expires = time.monotonic() + deadline
    while not condition():
        if time.monotonic() >= expires:
            pytest.fail(f"not within {deadline} s: {what}")
        time.sleep(0.1)


def media_ports_bound(lab: Lab) -> set[int]:
    """Ports of the edge's media ranges that some socket still holds."""
    return lab.udp_ports_bound("edge") & EDGE_MEDIA_PORTS


def test_admitted_ffmpeg_udp_session_gets_both_streams(
    racs_lab: Lab, edge_config: str
) -> None:
    """With Gq' admission on, ffmpeg over UDP gets both streams; STR frees them."""
    lab = racs_lab
    media, spdf, proxy = start_chain(lab, edge_config, spdf_config())

    result = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)

    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
    admitted = events_named(proxy, "racs.admitted")
    assert sorted(event["number"] for event in admitted) == [1, 2], admitted
    granted = [
        event
        for event in events_named(spdf, "spdf.decision", command=265)
        if event["result_code"] == "2001"
    ]
    assert {event["subscriber"] for event in granted} == {lab.addr["gateway_wan"]}
    assert max(event["bandwidth"] for event in granted) == 2 * STREAM_DOWNLINK
    assert media.lines_matching(rf"^EVENT SETUP {lab.addr['edge_core']} ")
    # ffmpeg hangs up right after its TEARDOWN: still a teardown (LOGOUT).
    wait_for_event(proxy, "session.ended", STEP_DEADLINE, cause="teardown")
    eventually(lambda: spdf_sessions(lab) == [], "the STR removes the session")


def test_subscriber_over_budget_gets_453_and_server_sees_no_setup(
    racs_lab: Lab, edge_config: str
) -> None:
    """Over its budget the box gets 453; no SETUP reaches the server."""
    lab = racs_lab
    wan = lab.addr["gateway_wan"]
    budgets = {wan.replace(".", "_"): SMALL_BUDGET}
    media, _, proxy = start_chain(lab, edge_config, spdf_config(**budgets))

    result = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)

    assert result.total == 0, result.describe()
    assert "453" in result.run.stderr, result.describe()
    (refused,) = events_named(proxy, "racs.refused")
    assert (refused["status"], refused["result_code"]) == (453, 4046), refused
    assert refused["vendor_id"] == 13019
    assert events_named(proxy, "admission.refused", status=453)
    assert media.lines_matching(r"^EVENT SETUP") == [], media.output()
    assert spdf_sessions(lab) == []
    assert media_ports_bound(lab) == set()


def test_rar_ends_the_session_on_both_sides_and_releases_bindings(
    racs_lab: Lab, edge_config: str
) -> None:
    """A releasing RAR tears the session down at the server and hangs up the box."""
    lab = racs_lab
    media, _, proxy = start_chain(lab, edge_config, spdf_config())
    client = lab.ffmpeg_background("box", lab.edge_url(), "udp", LONG_SECONDS)
    eventually(lambda: client.frames() > 0, "media reaches ffmpeg")
    (session,) = spdf_sessions(lab)
    assert media_ports_bound(lab), "the session holds no media ports"
    (box,) = lab.tcp_peers("edge", EDGE_RTSP_PORT)
    assert box.startswith(f"{lab.addr['gateway_wan']}:"), box

    path = f"/sessions/{quote(session['session_id'], safe='')}/rar?action=4"
    status, body = lab.spdf_admin("POST", path)

    assert (status, body) == (200, {"results": ["2001"]})
    media.wait_ready(rf"^EVENT TEARDOWN {lab.addr['edge_core']}$", STEP_DEADLINE)
    (aborted,) = wait_for_event(proxy, "racs.session_aborted", STEP_DEADLINE)
    assert aborted["command"] == 258
    (ended,) = wait_for_event(proxy, "session.ended", STEP_DEADLINE)
    assert ended["cause"].startswith("racs re-auth"), ended
    eventually(lambda: lab.tcp_peers("edge", EDGE_RTSP_PORT) == [], "box hung up")
    eventually(lambda: media_ports_bound(lab) == set(), "bindings released")
    eventually(lambda: spdf_sessions(lab) == [], "the STR removes the session")
    result = client.finish(STEP_DEADLINE)
    assert not result.run.timed_out, result.describe()
    assert result.run.elapsed < LONG_SECONDS, result.describe()


def test_spdf_down_fails_closed_then_sessions_resume_when_it_returns(
    racs_lab: Lab, edge_config: str
) -> None:
    """With the SPDF killed new SETUPs get 503; once it is back they pass."""
    lab = racs_lab
    spdf_text = spdf_config()
    media, spdf, proxy = start_chain(lab, edge_config, spdf_text)
    ongoing = lab.ffmpeg_background("box", lab.edge_url(), "udp", LONG_SECONDS)
    eventually(lambda: ongoing.frames() > 0, "media reaches the first ffmpeg")

    spdf.kill()
    wait_for_event(proxy, "diameter.peer.down", STEP_DEADLINE)
    setups = len(media.lines_matching(r"^EVENT SETUP"))
    refused = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)

    assert refused.total == 0, refused.describe()
    assert "503" in refused.run.stderr, refused.describe()
    assert events_named(proxy, "racs.refused", status=503)
    assert len(media.lines_matching(r"^EVENT SETUP")) == setups, media.output()

    lab.start_spdf(spdf_text)
    wait_for_event(proxy, "diameter.peer.open", STEP_DEADLINE, count=2)
    resumed = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)

    assert_both_streams(resumed, MIN_FFMPEG_VIDEO_FRAMES)
    assert_both_streams(ongoing.finish(), MIN_FFMPEG_VIDEO_FRAMES)
