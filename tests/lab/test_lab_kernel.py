"""Kernel media bindings end to end: hostednat with ``[nat] backend = "kernel"``.

The lab of ``test_lab_clients.py`` with hostednat (as root, in the edge) on the
kernel backend: the box's punches latch in Python, then each leg is two
elements of the ``hostednat`` nftables maps, and the media crosses the edge
in the kernel's NAT.  The tests decide on three things read independently:

- what the clients received (frames or RTP packets per stream, over >= 4 s
  of presentation time);
- hostednat's JSON events: ``kernel.binding_removed`` gives each released
  binding's packets forwarded by the kernel and by the Python relay,
  ``kernel.reconciled`` what a start removed, ``session.ended`` why;
- the edge's kernel state as an operator reads it (:mod:`kernel_state`):
  map elements from ``nft -j list map``, NATed entries and their per
  direction packet counts from ``conntrack -L --dst-nat``.

Every wait is bounded; the ``lab`` fixture stops every process and removes
the namespaces, and with them hostednat's table and entries, also after a
failure.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hostednat.events import (
    KERNEL_BINDING_REMOVED,
    KERNEL_RECONCILED,
    SERVICE_START_FAILED,
    SESSION_ENDED,
)

from .checks import (
    FFMPEG_SECONDS,
    GST_SECONDS,
    MIN_FFMPEG_VIDEO_FRAMES,
    MIN_GST_VIDEO_PACKETS,
    assert_both_streams,
)
from .clients import ClientResult
from .conftest import skip_unless_ready
from .harness import EDGE_RTSP_PORT, Lab
from .intruder import Sprayer
from .kernel_state import TABLE, element_count, map_elements, nat_entries
from .processes import (
    BackgroundProcess,
    events_named,
    tcp_accepts,
    twistd_argv,
    wait_for_event,
)

pytestmark = pytest.mark.lab

# The [nat].access_ports range of the edge configuration.
ACCESS_PORTS = range(30000, 30064)

# Two bindings (video, audio) of two legs, each leg one element per map.
ELEMENTS_PER_SESSION = 8

# Media packets the kernel must have carried to the box per binding in a
# 5 s run: the audio stream, the smaller one, sends about 15 a second.
MIN_KERNEL_PACKETS = 40

# Seconds for hostednat to react: a release after TEARDOWN, a restart.
STEP_DEADLINE = 10.0

# A session timeout short enough to expire while ffmpeg still plays: ffmpeg
# sends no keep-alive within the server's default 60 s.
TIMEOUT_SECTION = """\
default_session_timeout = 2.0
session_timeout_grace = 1.0
"""


@pytest.fixture
def kernel_config(edge_config: str) -> str:
    """The edge configuration on the kernel backend."""
    assert 'backend = "userspace"' in edge_config
    return edge_config.replace('backend = "userspace"', 'backend = "kernel"')


@pytest.fixture(autouse=True)
def conntrack_tool() -> None:
    """The conntrack tool reads the edge's entries; skip (or fail) without."""
    if shutil.which("conntrack") is None:
        skip_unless_ready(["missing on PATH: conntrack"])


@pytest.fixture
def proxy(lab: Lab, media_server: BackgroundProcess, kernel_config: str) -> Any:
    """hostednat on the kernel backend in the edge, logging JSON events."""
    return lab.start_hostednat(kernel_config, json_events=True)


def eventually(condition: Callable[[], bool], deadline: float = STEP_DEADLINE) -> bool:
    """Poll ``condition`` every 0.1 s until it holds or the deadline passes."""
    expires = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > expires:
            return False
        time.sleep(0.1)
    return True


def released(proxy: BackgroundProcess, count: int = 2) -> list[dict[str, Any]]:
    """Wait for ``count`` bindings to be released; their count events."""
    return wait_for_event(proxy, KERNEL_BINDING_REMOVED, STEP_DEADLINE, count)


def assert_media_in_kernel(bindings: list[dict[str, Any]], latches: int) -> None:
    """Each binding's media went through the kernel, and Python forwarded
    nothing: the box datagrams it saw were the ones that latched a leg."""
    for binding in bindings:
        counts = {k: v for k, v in binding.items() if k.startswith(("kern", "pyth"))}
        assert binding["kernel_to_box"] >= MIN_KERNEL_PACKETS, counts
        assert binding["python_to_box"] == 0, counts
        assert binding["python_to_server"] == 0, counts
        assert binding["latch_datagrams"] == latches, binding


def assert_nothing_left(lab: Lab) -> None:
    """No map element and no NATed conntrack entry remain in the edge."""
    assert element_count(lab) == 0, [map_elements(lab, m) for m in ("core", "access")]
    assert nat_entries(lab) == []


def test_ffmpeg_media_crosses_the_edge_in_the_kernel(
    lab: Lab, proxy: BackgroundProcess
) -> None:
    """ffmpeg over UDP gets both streams; the kernel carried the media, the
    Python relay none of it; TEARDOWN leaves no element and no NAT entry."""
    result = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)

    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
    assert_media_in_kernel(released(proxy), latches=2)
    (ended,) = events_named(proxy, SESSION_ENDED)
    # ffmpeg sends TEARDOWN and closes without waiting for the answer.
    assert ended["cause"] in ("teardown", "box connection closed"), ended
    assert_nothing_left(lab)


def test_gst_media_crosses_the_edge_in_the_kernel(
    lab: Lab, proxy: BackgroundProcess
) -> None:
    """GStreamer over UDP gets both streams through the kernel; its burst of
    punches latches once per leg and none is relayed by Python."""
    result = lab.gst("box", lab.edge_url(), "udp", GST_SECONDS)

    assert_both_streams(result, MIN_GST_VIDEO_PACKETS)
    assert_media_in_kernel(released(proxy), latches=2)
    assert events_named(proxy, SESSION_ENDED, cause="teardown")
    assert_nothing_left(lab)


@pytest.fixture
def streaming(lab: Lab, proxy: BackgroundProcess) -> Iterator[Any]:
    """A 20 s ffmpeg session in the background, once its media is NATed."""
    client = lab.ffmpeg_background("box", lab.edge_url(), "udp", 20)
    flowing = eventually(lambda: any(sum(e.packets) > 50 for e in nat_entries(lab)))
    assert flowing, f"no NATed media in the edge\n{client.process.output()}"
    yield client
    client.process.kill()


def test_session_timeout_removes_elements_and_entries(
    lab: Lab, media_server: BackgroundProcess, kernel_config: str
) -> None:
    """A session silent for its timeout loses its bindings: their media
    stops, and no element or NAT entry is left behind."""
    config = kernel_config.replace("[rtsp]\n", f"[rtsp]\n{TIMEOUT_SECTION}")
    proxy = lab.start_hostednat(config, json_events=True)
    client = lab.ffmpeg_background("box", lab.edge_url(), "udp", 20)
    try:
        wait_for_event(proxy, SESSION_ENDED, STEP_DEADLINE, cause="timeout")
        bindings = released(proxy)
        assert all(binding["kernel_to_box"] > 0 for binding in bindings), bindings
        assert_nothing_left(lab)
    finally:
        client.process.kill()


def test_restart_after_sigkill_reconciles_and_serves_again(
    lab: Lab,
    proxy: BackgroundProcess,
    kernel_config: str,
    streaming: Any,
) -> None:
    """hostednat killed mid-stream leaves its elements and NAT entries (the
    kernel keeps forwarding); the next start removes them before it
    listens, and a new session gets its media."""
    assert element_count(lab) == ELEMENTS_PER_SESSION
    proxy.kill()
    assert element_count(lab) == ELEMENTS_PER_SESSION
    left = nat_entries(lab)
    assert left

    restarted = lab.start_hostednat(kernel_config, json_events=True)

    assert_nothing_left(lab)
    (reconciled,) = events_named(restarted, KERNEL_RECONCILED)
    assert reconciled["elements"] == ELEMENTS_PER_SESSION
    assert reconciled["conntrack_deleted"] >= 2, (reconciled, left)
    streaming.process.kill()
    result = lab.ffmpeg("box", lab.edge_url(), "udp", FFMPEG_SECONDS)
    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
    assert_media_in_kernel(released(restarted), latches=2)


def test_intruder_cannot_latch_a_kernel_binding(
    lab: Lab, proxy: BackgroundProcess
) -> None:
    """A host spraying every access port gets nothing back; only the box's
    public address is ever a key of the access map; the box gets media."""
    edge_access = lab.addr["edge_access"]
    assert tcp_accepts(edge_access, EDGE_RTSP_PORT, lab.ns("intruder"))
    sprayer = Sprayer(lab.socket("intruder"), edge_access, ACCESS_PORTS)
    sprayer.start(lab.addr["intruder"])
    try:
        assert sprayer.wait_rounds(3), "the intruder's spray did not start"
        client = lab.ffmpeg_background("box", lab.edge_url(), "udp", FFMPEG_SECONDS)
        assert eventually(lambda: element_count(lab) == ELEMENTS_PER_SESSION)
        publics = {key["concat"][0] for key, _value in map_elements(lab, "access")}
        result: ClientResult = client.finish()
    finally:
        sprayer.stop()

    assert publics == {lab.addr["gateway_wan"]}
    assert sprayer.sent >= 3 * len(ACCESS_PORTS)
    assert sprayer.received == [], sprayer.received[:3]
    assert_both_streams(result, MIN_FFMPEG_VIDEO_FRAMES)
    assert_media_in_kernel(released(proxy), latches=2)


def test_clean_stop_deletes_the_table(lab: Lab, proxy: BackgroundProcess) -> None:
    """SIGTERM releases everything and deletes hostednat's table."""
    assert lab.run("edge", ["nft", "list", "table", "ip", TABLE]).returncode == 0

    # twistd ends a SIGTERM'd run by re-raising the signal on itself.
    assert proxy.stop() == -signal.SIGTERM, proxy.output()
    assert lab.run("edge", ["nft", "list", "table", "ip", TABLE]).returncode != 0
    assert nat_entries(lab) == []


def test_failed_kernel_start_stops_twistd_before_it_listens(
    lab: Lab, kernel_config: str
) -> None:
    """A table the kernel refuses (its name is too long) fails the start:
    twistd logs service.start_failed, never listens, and exits 1."""
    config = kernel_config.replace("[nat]\n", f'[nat]\ntable = "{"t" * 300}"\n')
    path = lab.directory / "refused.toml"
    path.write_text(config)
    process = lab.spawn("edge", twistd_argv("hostednat", path, json_events=True))

    status = process.wait(STEP_DEADLINE)

    assert status == 1, process.output()
    (failed,) = events_named(process, SERVICE_START_FAILED)
    assert "list core" in failed["error"], failed
    assert not tcp_accepts(lab.addr["edge_access"], EDGE_RTSP_PORT, lab.ns("edge"))
