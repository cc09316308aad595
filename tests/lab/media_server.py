"""A live RTSP media server for the end-to-end tests, built on gst-rtsp-server.

Run it with Debian's ``/usr/bin/python3``: the project's virtualenv has no
``gi``.  It serves one mount with two live streams, so a client always has
both an RTP video and an RTP audio stream to receive:

- ``pay0``: ``videotestsrc`` at 320x240, 15 frames/s, JPEG in RTP (RFC 2435,
  static payload type 26).  The raw caps pin ``format=I420``: with the default
  4:4:4 output of ``jpegenc`` the media never prerolls and DESCRIBE hangs;
- ``pay1``: ``audiotestsrc`` at 8 kHz mono, L16 in RTP (RFC 3551 4.5.11,
  dynamic payload type 96).

Both UDP and TCP interleaved lower transports are allowed.  The factory is
*unshared* unless ``--shared`` is given: a shared factory sends RTCP BYE to
every remaining client when one leaves, which ffmpeg takes as end of stream.

gst-rtsp-server writes no ``b=`` line.  ``--bandwidth-kbps N`` adds
``b=AS:N`` to every media section, as an IPTV head-end's SDP carries, so
that a RACS admission has a bandwidth to ask for.

Protocol with the parent process, on standard output, one line each:

- ``READY <port>`` once the listening socket is bound (``--port 0`` picks a
  free port, and this line names it);
- ``EVENT <method> <peer address> [<transport>]`` for every SETUP, PLAY and
  TEARDOWN the server accepts, so a test can tell "the session was set up but
  no media arrived" apart from "the server was never reached".

SIGTERM and SIGINT stop the main loop and the process exits with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")

from gi.repository import GLib, GObject, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO_BRANCH = (
    "videotestsrc is-live=true"
    " ! video/x-raw,format=I420,width=320,height=240,framerate=15/1"
    " ! jpegenc ! rtpjpegpay name=pay0 pt=26"
)
AUDIO_BRANCH = (
    "audiotestsrc is-live=true"
    " ! audio/x-raw,rate=8000,channels=1"
    " ! audioconvert ! rtpL16pay name=pay1 pt=96"
)
LAUNCH_LINE = f"( {VIDEO_BRANCH} {AUDIO_BRANCH} )"

RequestHandler = Callable[[GstRtspServer.RTSPClient, GstRtspServer.RTSPContext], None]


def announcing_media_type(bandwidth_kbps: int) -> GObject.GType:
    """A media type whose SDP gives every stream ``b=AS:<bandwidth_kbps>``.

    The subclass is made here, after ``Gst.init``: registered earlier, its
    inherited signals carry unregistered parameter types and the media
    cannot be prepared.

    :param bandwidth_kbps: the value of every ``b=AS`` line.
    """

    class AnnouncedBandwidthMedia(GstRtspServer.RTSPMedia):  # type: ignore[misc]
        def do_setup_sdp(self, sdp: Any, info: Any) -> bool:
            written = GstRtspServer.RTSPMedia.do_setup_sdp(self, sdp, info)
            for index in range(sdp.medias_len()):
                sdp.get_media(index).add_bandwidth("AS", bandwidth_kbps)
            return bool(written)

    return AnnouncedBandwidthMedia.__gtype__


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Read the command line.

    :param argv: the arguments after the program name.
    :returns: the parsed options.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--shared", action="store_true")
    parser.add_argument("--bandwidth-kbps", type=int, default=0)
    return parser.parse_args(argv)


def report(*words: str) -> None:
    """Write one line to standard output and flush it at once.

    :param words: the words of the line, joined by single spaces.
    """
    print(" ".join(words), flush=True)


def build_factory(
    shared: bool, bandwidth_kbps: int = 0
) -> GstRtspServer.RTSPMediaFactory:
    """Make the media factory for the test mount.

    :param shared: whether all clients share one media pipeline.
    :param bandwidth_kbps: the ``b=AS`` value for every stream; 0 for none.
    :returns: a factory allowing UDP and TCP interleaved transports.
    """
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH_LINE)
    factory.set_shared(shared)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
    if bandwidth_kbps:
        factory.set_media_gtype(announcing_media_type(bandwidth_kbps))
    return factory


def request_reporter(method: str) -> RequestHandler:
    """Make a request-signal handler that reports the method and the peer.

    :param method: the RTSP method name to print.
    :returns: a callable for the client's ``<method>-request`` signal.
    """

    def on_request(
        client: GstRtspServer.RTSPClient, context: GstRtspServer.RTSPContext
    ) -> None:
        peer = client.get_connection().get_ip()
        words = ["EVENT", method, peer]
        if context.request is not None:
            result, transport = context.request.get_header(
                GstRtsp.RTSPHeaderField.TRANSPORT, 0
            )
            if result == GstRtsp.RTSPResult.OK and transport:
                words.append(transport)
        report(*words)

    return on_request


def on_client_connected(
    server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient
) -> None:
    """Watch a new client's SETUP, PLAY and TEARDOWN requests.

    :param server: the server that accepted the connection.
    :param client: the new client.
    """
    for method in ("setup", "play", "teardown"):
        client.connect(f"{method}-request", request_reporter(method.upper()))


def main(argv: list[str]) -> int:
    """Serve until SIGTERM or SIGINT.

    :param argv: the arguments after the program name.
    :returns: the process exit status.
    """
    options = parse_arguments(argv)
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(options.address)
    server.set_service(str(options.port))
    server.get_mount_points().add_factory(
        options.mount, build_factory(options.shared, options.bandwidth_kbps)
    )
    server.connect("client-connected", on_client_connected)

    loop = GLib.MainLoop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal_number, loop.quit)

    if server.attach(None) == 0:
        print(
            f"cannot listen on {options.address}:{options.port}",
            file=sys.stderr,
        )
        return 1
    report("READY", str(server.get_bound_port()))
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
