"""Real RTSP clients run for a bounded time, reporting what reached them.

Neither client's exit status says whether media arrived: ffmpeg exits 0 with
"Output file is empty", and ``gst-launch-1.0`` stopped by SIGINT after EOS
exits 0 too.  So both count what they received, per stream:

- **ffmpeg** writes ``framecrc`` lines (``stream, dts, pts, duration, size,
  checksum``) for every decoded frame; ``#tb`` and ``#media_type`` header
  lines give each output stream's time base and kind.  The unit is a
  decoded frame.
- **GStreamer** ``rtspsrc`` pads are routed by caps filters
  (``application/x-rtp,media=video``) to a ``fakesink`` named after the
  kind of stream, so the sink's name says what it counts; with
  ``silent=false`` and ``gst-launch-1.0 -v`` every buffer prints a
  ``last-message = chain`` line naming its sink, with its PTS.  (Caps
  notifications printed by ``-v`` are not reliable enough to tell the
  streams apart: one is sometimes missing.)  The unit is an RTP packet, a
  JPEG frame spans several; the count is a lower bound should GObject ever
  merge two notifications.

Besides the count, each stream reports the span of presentation times it
received, which shows media arrived *throughout* the run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from .processes import BackgroundProcess, Finished, run_bounded, tail

Transport = Literal["udp", "tcp"]

# ffmpeg's RTSP socket timeout in microseconds: without it a UDP session
# that gets no media waits forever.
FFMPEG_SOCKET_TIMEOUT_US = 4_000_000

# Seconds a client may take beyond its media duration to set up the session
# and tear it down before it is killed.
SETUP_ALLOWANCE = 20.0

FFMPEG_HEADER = re.compile(r"^#(?P<key>tb|media_type) (?P<index>\d+): (?P<value>\S+)$")
GST_BUFFER = re.compile(
    r"GstFakeSink:(?P<media>video|audio): last-message = chain .*?"
    r"pts: (?P<pts>\d+:\d\d:\d\d\.\d+|none)"
)

# The kinds of stream the media server offers, in the order its SDP lists
# them; GStreamer results use these positions as stream indexes.
GST_MEDIA = ("video", "audio")


@dataclass
class StreamCount:
    """What one stream delivered.

    :ivar media: ``video``, ``audio`` or ``unknown``.
    :ivar count: frames (ffmpeg) or RTP packets (GStreamer).
    :ivar first: the earliest presentation time seen, in seconds.
    :ivar last: the latest presentation time seen, in seconds.
    """

    media: str = "unknown"
    count: int = 0
    first: float | None = None
    last: float | None = None

    def add(self, pts: float | None) -> None:
        """Count one unit and widen the time span by its PTS.

        :param pts: its presentation time in seconds, if known.
        """
        self.count += 1
        if pts is None:
            return
        self.first = pts if self.first is None else min(self.first, pts)
        self.last = pts if self.last is None else max(self.last, pts)

    @property
    def span(self) -> float:
        """Seconds between the first and the last presentation time."""
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


@dataclass
class ClientResult:
    """The outcome of one client run.

    :ivar client: ``ffmpeg`` or ``gst``.
    :ivar unit: what :attr:`StreamCount.count` counts.
    :ivar streams: per stream index, what arrived.
    :ivar run: the process's exit status and outputs.
    """

    client: str
    unit: str
    run: Finished
    streams: dict[int, StreamCount] = field(default_factory=dict)

    def count(self, media: str) -> int:
        """Total units received on streams of one kind.

        :param media: ``video`` or ``audio``.
        """
        return sum(s.count for s in self.streams.values() if s.media == media)

    def span(self, media: str) -> float:
        """The longest time span received on a stream of one kind.

        :param media: ``video`` or ``audio``.
        """
        return max(
            (s.span for s in self.streams.values() if s.media == media),
            default=0.0,
        )

    @property
    def total(self) -> int:
        """Units received on all streams."""
        return sum(s.count for s in self.streams.values())

    def summary(self) -> str:
        """One line per stream, for assertion messages."""
        counts = ", ".join(
            f"#{index} {s.media}: {s.count} {self.unit} over {s.span:.2f} s"
            for index, s in sorted(self.streams.items())
        )
        return f"{self.client}: {counts or f'no {self.unit}'}"

    def describe(self) -> str:
        """The summary, the exit status and the end of standard error."""
        run = self.run
        return (
            f"{self.summary()}\n$ {' '.join(run.argv)}\n"
            f"exit {run.returncode}{' (timed out)' if run.timed_out else ''}"
            f" after {run.elapsed:.1f} s\n--- stderr\n{tail(run.stderr)}"
        )


def parse_framecrc(text: str) -> dict[int, StreamCount]:
    """Count frames per output stream in ffmpeg ``framecrc`` output.

    :param text: the whole standard output of ``ffmpeg -f framecrc -``.
    """
    streams: dict[int, StreamCount] = {}
    time_bases: dict[int, Fraction] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            header = FFMPEG_HEADER.match(line)
            if header is None:
                continue
            index = int(header["index"])
            if header["key"] == "tb":
                time_bases[index] = Fraction(header["value"])
            else:
                streams.setdefault(index, StreamCount()).media = header["value"]
            continue
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        index = int(fields[0])
        time_base = time_bases.get(index)
        pts = (
            float(int(fields[2]) * time_base)
            if time_base is not None and fields[2].lstrip("-").isdigit()
            else None
        )
        streams.setdefault(index, StreamCount()).add(pts)
    return streams


def gst_seconds(text: str) -> float | None:
    """Convert a GStreamer time (``H:MM:SS.nnnnnnnnn`` or ``none``) to seconds.

    :param text: the time as printed by ``GST_TIME_FORMAT``.
    """
    if text == "none":
        return None
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_fakesink_log(text: str) -> dict[int, StreamCount]:
    """Count buffers per ``fakesink`` in ``gst-launch-1.0 -v`` output.

    Every stream of :data:`GST_MEDIA` is present in the result, with a count
    of 0 when nothing reached its sink.

    :param text: the whole standard output of the pipeline.
    """
    streams = {index: StreamCount(media=media) for index, media in enumerate(GST_MEDIA)}
    indexes = {media: index for index, media in enumerate(GST_MEDIA)}
    for line in text.splitlines():
        buffer = GST_BUFFER.search(line)
        if buffer is not None:
            streams[indexes[buffer["media"]]].add(gst_seconds(buffer["pts"]))
    return streams


def ffmpeg_argv(url: str, transport: Transport, seconds: float) -> list[str]:
    """Build the ffmpeg command that receives ``seconds`` of media.

    ``-use_wallclock_as_timestamps 1`` keeps ffmpeg from ending early when a
    proxy's RTCP sender reports disagree with the server's clock.

    :param url: the RTSP URL.
    :param transport: the RTSP lower transport.
    :param seconds: the output duration.
    """
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-use_wallclock_as_timestamps",
        "1",
        "-rtsp_transport",
        transport,
        "-timeout",
        str(FFMPEG_SOCKET_TIMEOUT_US),
        "-i",
        url,
        "-t",
        str(seconds),
        "-f",
        "framecrc",
        "-",
    ]


def run_ffmpeg(
    url: str,
    transport: Transport = "udp",
    seconds: float = 5,
    netns: str | None = None,
) -> ClientResult:
    """Receive from an RTSP URL with ffmpeg and count frames per stream.

    :param url: the RTSP URL.
    :param transport: ``udp`` or ``tcp`` (interleaved).
    :param seconds: the media duration to ask for.
    :param netns: the namespace to run in, if any.
    """
    finished = run_bounded(
        ffmpeg_argv(url, transport, seconds),
        timeout=seconds + SETUP_ALLOWANCE,
        netns=netns,
    )
    return ClientResult(
        client="ffmpeg",
        unit="frames",
        run=finished,
        streams=parse_framecrc(finished.stdout),
    )


class RunningFfmpeg:
    """An ffmpeg receiving in the background, for a session a test acts on.

    :ivar process: the running client.
    """

    def __init__(self, process: BackgroundProcess, seconds: float) -> None:
        """Take over a started ffmpeg.

        :param process: ffmpeg, started with :func:`ffmpeg_argv`.
        :param seconds: the media duration it was asked for.
        """
        self.process = process
        self.seconds = seconds
        self._started = time.monotonic()

    def frames(self) -> int:
        """Frames it has written so far, all streams together."""
        return sum(
            stream.count
            for stream in parse_framecrc(
                "\n".join(self.process.stdout_so_far())
            ).values()
        )

    def finish(self, timeout: float | None = None) -> ClientResult:
        """Wait for it to exit, killing it at the deadline; count its frames.

        :param timeout: seconds to wait; by default its media duration plus
            :data:`SETUP_ALLOWANCE` from its start.
        """
        if timeout is None:
            elapsed = time.monotonic() - self._started
            timeout = max(0.0, self.seconds + SETUP_ALLOWANCE - elapsed)
        timed_out = self.process.wait(timeout) is None
        if timed_out:
            self.process.kill()
        stdout = "\n".join(self.process.stdout_so_far())
        finished = Finished(
            argv=self.process.argv,
            returncode=self.process.returncode or 0,
            timed_out=timed_out,
            elapsed=time.monotonic() - self._started,
            stdout=stdout,
            stderr="\n".join(self.process.stderr_lines),
        )
        return ClientResult(
            client="ffmpeg",
            unit="frames",
            run=finished,
            streams=parse_framecrc(stdout),
        )


def gst_argv(url: str, transport: Transport, seconds: float) -> list[str]:
    """Build the GStreamer pipeline that receives for ``seconds``.

    ``timeout -s INT`` with ``-e`` makes rtspsrc send TEARDOWN before it
    exits; ``-k`` kills a pipeline that ignores the interrupt.

    :param url: the RTSP URL.
    :param transport: the RTSP lower transport.
    :param seconds: how long the pipeline runs, setup included.
    """
    sinks: list[str] = []
    for media in GST_MEDIA:
        sinks += ["s.", "!", f"application/x-rtp,media={media}"]
        sinks += f"! queue ! fakesink name={media} silent=false sync=false".split()
    return [
        "timeout",
        "--preserve-status",
        "-k",
        "5",
        "-s",
        "INT",
        str(seconds),
        "gst-launch-1.0",
        "-e",
        "-v",
        "rtspsrc",
        f"location={url}",
        f"protocols={transport}",
        "name=s",
        *sinks,
    ]


def run_gst(
    url: str,
    transport: Transport = "udp",
    seconds: float = 6,
    netns: str | None = None,
) -> ClientResult:
    """Receive from an RTSP URL with GStreamer and count RTP packets per stream.

    :param url: the RTSP URL.
    :param transport: ``udp`` or ``tcp`` (interleaved).
    :param seconds: how long the pipeline runs, setup included.
    :param netns: the namespace to run in, if any.
    """
    finished = run_bounded(
        gst_argv(url, transport, seconds),
        timeout=seconds + SETUP_ALLOWANCE,
        netns=netns,
    )
    return ClientResult(
        client="gst",
        unit="RTP packets",
        run=finished,
        streams=parse_fakesink_log(finished.stdout),
    )


def by_media(result: ClientResult) -> Mapping[str, int]:
    """Units received per kind of stream, e.g. ``{"video": 75, "audio": 70}``.

    :param result: a client run.
    """
    totals: dict[str, int] = {}
    for stream in result.streams.values():
        totals[stream.media] = totals.get(stream.media, 0) + stream.count
    return totals
