"""Fixtures for the end-to-end tests in network namespaces and on loopback.

``lab`` (function scope, tests marked ``lab``) builds the topology described
in :mod:`netns` from scratch for each test (about 50 ms up, 30 ms down) and
yields a :class:`harness.Lab`:

- ``lab.ns(role)``: the namespace name of ``box``, ``gateway``, ``edge``,
  ``media`` or ``intruder``;
- ``lab.addr[name]``: ``box``, ``gateway_lan``, ``gateway_wan``,
  ``edge_access``, ``edge_core``, ``media``, ``intruder``;
- ``lab.run(role, argv, timeout)``: run a command to completion in a host,
  returning exit status and outputs (:class:`processes.Finished`);
- ``lab.spawn(role, argv, ready=..., deadline=...)``: start a background
  process in a host and wait for a stdout line matching a pattern, or for a
  probe to return true (:class:`processes.BackgroundProcess`);
- ``lab.socket(role, kind)``: a socket opened inside a host;
- ``lab.start_media_server(shared=False)``: ``media_server.py`` on
  203.0.113.10:8554, mount ``/test``; ``lab.media_url(host, port)``;
- ``lab.start_hostednat(config_text)``: writes the TOML to a private file
  and runs ``twistd -n --pidfile= --logfile=- hostednat --config FILE`` from
  the venv in the edge, ready once the first ``[rtsp].listen`` endpoint
  accepts TCP inside the edge;
- ``lab.ffmpeg(role, url, transport, seconds)`` and ``lab.gst(...)``: the
  clients of :mod:`clients`, run in a host; ``lab.ffmpeg_background(...)``
  starts one and returns at once.

``racs_lab`` is the same topology plus a ``racs`` host on its own link from
the edge (192.0.2.20), where ``lab.start_spdf(config_text)`` runs the SPDF
simulator (``twistd hostednat-spdf``) and ``lab.spdf_admin(method, path)``
calls its admin HTTP endpoint from inside that host.

On teardown, also after a failure or Ctrl-C, every process the lab started
is stopped (SIGTERM, then SIGKILL) and its namespaces are deleted.  Before
the first lab of a session, namespaces left by dead runs are removed.

Lab tests skip, with the reason, without root or without one of ``ip``,
``nft``, ``ffmpeg``, ``gst-launch-1.0``, ``timeout`` and Debian's
``/usr/bin/python3`` with the GStreamer RTSP server bindings.  With
``HOSTEDNAT_REQUIRE_LAB=1`` (set it in CI) a missing prerequisite fails the
tests instead, so a broken runner cannot turn the suite silently green.

``loopback_tools`` (tests marked ``loopback``) needs no root: only ``ffmpeg``
and the bindings.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Lab
from .netns import Topology, remove_stale_namespaces
from .processes import SYSTEM_PYTHON, BackgroundProcess

REQUIRE_VARIABLE = "HOSTEDNAT_REQUIRE_LAB"

LAB_TOOLS = ("ip", "ss", "nft", "ffmpeg", "gst-launch-1.0", "timeout")
LOOPBACK_TOOLS = ("ffmpeg",)

GI_CHECK = (
    "import gi; gi.require_version('GstRtspServer', '1.0');"
    " from gi.repository import GstRtspServer"
)

EDGE_CONFIG = """\
[rtsp]
listen = ["tcp:554:interface=198.51.100.1"]
mode = "reverse"

[[routes]]
prefix = "/"
upstream = "rtsp://203.0.113.10:8554/"

[nat]
backend = "userspace"
access_address = "198.51.100.1"
core_address = "203.0.113.1"
access_ports = "30000-30063"
core_ports = "40000-40063"
"""


@functools.cache
def media_server_problem() -> str | None:
    """Say why Debian's Python cannot run the media server, or ``None``."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", GI_CHECK],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{SYSTEM_PYTHON} cannot load GstRtspServer: {last}"
    return None


def missing_prerequisites(tools: tuple[str, ...], need_root: bool) -> list[str]:
    """List what keeps the end-to-end tests from running here.

    :param tools: executables that must be on ``PATH``.
    :param need_root: whether the tests create namespaces.
    """
    problems = []
    if need_root and os.geteuid() != 0:
        problems.append("not root (network namespaces need CAP_SYS_ADMIN)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        problems.append(f"missing on PATH: {', '.join(missing)}")
    gi_problem = media_server_problem()
    if gi_problem is not None:
        problems.append(gi_problem)
    return problems


def skip_unless_ready(problems: list[str]) -> None:
    """Skip the test for these reasons, or fail it when CI requires the lab.

    :param problems: what is missing; nothing happens when empty.
    """
    if not problems:
        return
    reason = "; ".join(problems)
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """Check root and tools once, and remove namespaces of dead runs."""
    skip_unless_ready(missing_prerequisites(LAB_TOOLS, need_root=True))
    remove_stale_namespaces()


@pytest.fixture
def lab(lab_prerequisites: None, tmp_path: Path) -> Iterator[Lab]:
    """A fresh five-namespace topology, torn down after the test."""
    topology = Topology.create()
    harness = Lab(topology, tmp_path)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def racs_lab(lab_prerequisites: None, tmp_path: Path) -> Iterator[Lab]:
    """The lab topology plus the racs host for the SPDF simulator."""
    topology = Topology.create(racs=True)
    harness = Lab(topology, tmp_path)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def media_server(lab: Lab) -> BackgroundProcess:
    """The RTSP media server on 203.0.113.10:8554 with mount ``/test``."""
    return lab.start_media_server()


@pytest.fixture
def edge_config() -> str:
    """hostednat's configuration for the edge, in reverse mode."""
    return EDGE_CONFIG


@pytest.fixture(scope="session")
def loopback_tools() -> None:
    """Skip unless ffmpeg and the media server's bindings are present."""
    skip_unless_ready(missing_prerequisites(LOOPBACK_TOOLS, need_root=False))
