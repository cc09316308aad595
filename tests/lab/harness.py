"""The object behind the ``lab`` fixture: a topology plus the processes in it.

Everything a test starts through a :class:`Lab` is stopped when the lab
closes, before its namespaces are deleted, in reverse order of start.
"""

from __future__ import annotations

import http.client
import json
import socket
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .clients import (
    ClientResult,
    RunningFfmpeg,
    Transport,
    ffmpeg_argv,
    run_ffmpeg,
    run_gst,
)
from .netns import Topology, open_socket, run_in_netns
from .processes import (
    BackgroundProcess,
    Finished,
    Readiness,
    run_bounded,
    start_hostednat,
    start_media_server,
    start_twistd,
)

MEDIA_PORT = 8554
EDGE_RTSP_PORT = 554
MEDIA_MOUNT = "/test"

# Seconds an admin HTTP request to the SPDF simulator may take; a POST
# waits for the AF's RAA or ASA, itself bounded by the simulator's timer.
ADMIN_TIMEOUT = 10.0


def endpoint_address(description: str, default_host: str) -> tuple[str, int]:
    """Find the address a Twisted ``tcp:`` server endpoint listens on.

    :param description: e.g. ``tcp:554:interface=198.51.100.1``.
    :param default_host: the address to use when no interface is named.
    :raises ValueError: for anything but a ``tcp:`` endpoint with a port.
    """
    kind, _, rest = description.partition(":")
    if kind != "tcp":
        raise ValueError(f"cannot probe a {kind!r} endpoint: {description}")
    arguments = rest.split(":")
    options = dict(part.split("=", 1) for part in arguments if "=" in part)
    positional = [part for part in arguments if "=" not in part]
    port = int(options.get("port", positional[0] if positional else "0"))
    if port == 0:
        raise ValueError(f"no port in {description}")
    return options.get("interface", default_host), port


class Lab:
    """The lab's namespaces (box, gateway, edge, media, intruder, and racs when
    built) and their processes.

    :ivar topology: the namespaces, links and rules.
    :ivar directory: a private directory for configuration files.
    """

    def __init__(self, topology: Topology, directory: Path) -> None:
        """Take over a built topology.

        :param topology: what :meth:`Topology.create` returned.
        :param directory: a private directory for configuration files.
        """
        self.topology = topology
        self.directory = directory
        self._processes: list[BackgroundProcess] = []
        self._sockets: list[socket.socket] = []
        self._spdf_admin: tuple[str, int] | None = None

    @property
    def addr(self) -> Mapping[str, str]:
        """The lab's addresses by name.

        The names are ``box``, ``gateway_lan``, ``gateway_wan``,
        ``edge_access``, ``edge_core``, ``media`` and ``intruder``; with the
        racs host also ``edge_racs`` and ``racs``.
        """
        return self.topology.addr

    def ns(self, role: str) -> str:
        """Name the namespace of a lab host.

        :param role: ``box``, ``gateway``, ``edge``, ``media``, ``intruder``,
            or ``racs`` when the topology has it.
        """
        return self.topology.ns(role)

    def run(self, role: str, argv: Sequence[str], timeout: float = 30.0) -> Finished:
        """Run a command to completion inside a lab host.

        :param role: the host.
        :param argv: the command and its arguments.
        :param timeout: seconds before the command's group is killed.
        :returns: exit status and outputs; nothing is raised on failure.
        """
        return run_bounded(argv, timeout=timeout, netns=self.ns(role))

    def spawn(
        self,
        role: str,
        argv: Sequence[str],
        ready: Readiness = None,
        deadline: float = 15.0,
    ) -> BackgroundProcess:
        """Start a background process in a lab host and wait until it is ready.

        :param role: the host.
        :param argv: the command and its arguments.
        :param ready: a pattern for a standard output line, a probe that
            returns true once ready, or ``None`` not to wait.
        :param deadline: seconds to wait for readiness.
        :raises ProcessFailed: when it exits or misses the deadline.
        """
        process = BackgroundProcess(argv, netns=self.ns(role))
        self._processes.append(process)
        process.wait_ready(ready, deadline)
        return process

    def socket(
        self, role: str, kind: socket.SocketKind = socket.SOCK_DGRAM
    ) -> socket.socket:
        """Open an IPv4 socket inside a lab host; it is closed with the lab.

        :param role: the host.
        :param kind: ``SOCK_DGRAM`` or ``SOCK_STREAM``.
        """
        created = open_socket(self.ns(role), kind)
        self._sockets.append(created)
        return created

    def media_url(self, host: str | None = None, port: int = MEDIA_PORT) -> str:
        """The RTSP URL of the test mount.

        :param host: the host part; the media server's address by default.
        :param port: the port part.
        """
        return f"rtsp://{host or self.addr['media']}:{port}{MEDIA_MOUNT}"

    def edge_url(self, port: int = EDGE_RTSP_PORT) -> str:
        """The URL a box uses through hostednat: the test mount on the edge.

        :param port: hostednat's RTSP port on the access address.
        """
        return self.media_url(self.addr["edge_access"], port)

    def start_media_server(
        self, shared: bool = False, bandwidth_kbps: int = 0
    ) -> BackgroundProcess:
        """Serve the test mount from the media host on port 8554.

        :param shared: whether to use a shared media factory.
        :param bandwidth_kbps: announce ``b=AS`` with this value; 0 for none.
        """
        server, _ = start_media_server(
            self.addr["media"],
            MEDIA_PORT,
            netns=self.ns("media"),
            mount=MEDIA_MOUNT,
            shared=shared,
            bandwidth_kbps=bandwidth_kbps,
        )
        self._processes.append(server)
        return server

    def start_hostednat(
        self, config_text: str, deadline: float = 15.0, json_events: bool = False
    ) -> BackgroundProcess:
        """Run hostednat in the edge host with a TOML configuration.

        Ready once the first ``[rtsp].listen`` endpoint accepts a TCP
        connection from inside the edge.

        :param config_text: the configuration file's text.
        :param deadline: seconds to wait for the listener.
        :param json_events: log events as JSON lines, read back with
            :func:`processes.logged_events`.
        :raises ProcessFailed: when it exits or does not listen in time.
        """
        listen = tomllib.loads(config_text)["rtsp"]["listen"][0]
        address = endpoint_address(listen, self.addr["edge_access"])
        directory = Path(tempfile.mkdtemp(prefix="hostednat-", dir=self.directory))
        proxy = start_hostednat(
            config_text,
            directory,
            address,
            netns=self.ns("edge"),
            deadline=deadline,
            json_events=json_events,
        )
        self._processes.append(proxy)
        return proxy

    def start_spdf(self, config_text: str, deadline: float = 15.0) -> BackgroundProcess:
        """Run the SPDF simulator (``twistd hostednat-spdf``) in the racs host.

        Ready once its admin endpoint accepts a TCP connection from inside
        the racs host: the simulator starts its Diameter listener first, and
        a probe of that one would count as a peer that left without a CER.
        Events are logged as JSON lines.  May be called again after the
        previous simulator was stopped or killed.

        :param config_text: the simulator's TOML (see ``conf/spdf.toml``);
            ``[admin].listen`` is required.
        :param deadline: seconds to wait for the listeners.
        :raises ProcessFailed: when it exits or does not listen in time.
        """
        config = tomllib.loads(config_text)
        self._spdf_admin = endpoint_address(
            config["admin"]["listen"], self.addr["racs"]
        )
        directory = Path(tempfile.mkdtemp(prefix="spdf-", dir=self.directory))
        spdf = start_twistd(
            "hostednat-spdf",
            config_text,
            directory,
            [self._spdf_admin],
            netns=self.ns("racs"),
            deadline=deadline,
            json_events=True,
        )
        self._processes.append(spdf)
        return spdf

    def spdf_admin(self, method: str, path: str) -> tuple[int, Any]:
        """Call the SPDF simulator's admin HTTP endpoint from the racs host.

        :param method: ``GET`` or ``POST``.
        :param path: e.g. ``/sessions`` or ``/sessions/<id>/rar?action=4``;
            the Session-Id must be percent-encoded.
        :returns: the HTTP status and the decoded JSON body.
        :raises RuntimeError: when no simulator was started.
        """
        if self._spdf_admin is None:
            raise RuntimeError("start_spdf() first")
        host, port = self._spdf_admin

        def call() -> tuple[int, Any]:
            connection = http.client.HTTPConnection(host, port, timeout=ADMIN_TIMEOUT)
            try:
                connection.request(method, path)
                response = connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            finally:
                connection.close()

        return run_in_netns(self.ns("racs"), call)

    def udp_ports_bound(self, role: str) -> set[int]:
        """The UDP ports some socket is bound to inside a lab host.

        :param role: the host.
        :raises RuntimeError: when ``ss`` fails.
        """
        return set(self._ss(role, ["-Hnuan"], column=3))

    def tcp_peers(self, role: str, local_port: int) -> list[str]:
        """Peers of the established TCP connections on a local port of a host.

        :param role: the host.
        :param local_port: e.g. 554 for hostednat's RTSP listener.
        :raises RuntimeError: when ``ss`` fails.
        """
        argv = ["-Hnt", "state", "established", f"( sport = :{local_port} )"]
        return [f"{address}" for address in self._ss_columns(role, argv, column=3)]

    def _ss(self, role: str, options: list[str], column: int) -> list[int]:
        return [
            int(address.rpartition(":")[2])
            for address in self._ss_columns(role, options, column)
        ]

    def _ss_columns(self, role: str, options: list[str], column: int) -> list[str]:
        finished = self.run(role, ["ss", *options], timeout=10)
        if finished.returncode != 0:
            raise RuntimeError(f"ss {' '.join(options)}: {finished.stderr}")
        rows = [line.split() for line in finished.stdout.splitlines()]
        return [row[column] for row in rows if len(row) > column]

    def ffmpeg(
        self, role: str, url: str, transport: Transport, seconds: float = 5
    ) -> ClientResult:
        """Run ffmpeg in a lab host; see :func:`clients.run_ffmpeg`.

        :param role: the host.
        :param url: the RTSP URL.
        :param transport: ``udp`` or ``tcp``.
        :param seconds: the media duration to ask for.
        """
        return run_ffmpeg(url, transport, seconds, netns=self.ns(role))

    def ffmpeg_background(
        self, role: str, url: str, transport: Transport, seconds: float
    ) -> RunningFfmpeg:
        """Start ffmpeg in a lab host and return at once; stopped with the lab.

        :param role: the host.
        :param url: the RTSP URL.
        :param transport: ``udp`` or ``tcp``.
        :param seconds: the media duration to ask for.
        """
        process = self.spawn(role, ffmpeg_argv(url, transport, seconds))
        return RunningFfmpeg(process, seconds)

    def gst(
        self, role: str, url: str, transport: Transport, seconds: float = 6
    ) -> ClientResult:
        """Run GStreamer's rtspsrc in a lab host; see :func:`clients.run_gst`.

        :param role: the host.
        :param url: the RTSP URL.
        :param transport: ``udp`` or ``tcp``.
        :param seconds: how long the pipeline runs.
        """
        return run_gst(url, transport, seconds, netns=self.ns(role))

    def close(self) -> None:
        """Stop every process (newest first), close sockets, delete namespaces."""
        try:
            while self._processes:
                self._processes.pop().stop()
            while self._sockets:
                self._sockets.pop().close()
        finally:
            self.topology.destroy()
