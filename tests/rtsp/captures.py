"""Loader for the golden RTSP captures in ``tests/data/rtsp``.

Each file is the exact byte stream of one direction of one connection; see
the README.rst beside the files for where each came from.
"""

from __future__ import annotations

from pathlib import Path

from hostednat.rtsp.parser import Event, RtspParser

DATA = Path(__file__).resolve().parent.parent / "data" / "rtsp"


def load(name: str) -> bytes:
    """Return the bytes of capture *name*, exactly as stored."""
    return (DATA / name).read_bytes()


def names(pattern: str = "*") -> list[str]:
    """Return the capture file names matching a glob *pattern*, sorted."""
    return sorted(
        path.name
        for path in DATA.glob(pattern)
        if path.suffix in (".txt", ".bin") and path.is_file()
    )


def parse(data: bytes) -> list[Event]:
    """Parse a whole stream and check nothing is left over."""
    parser = RtspParser()
    events = parser.feed(data)
    assert parser.buffered == 0
    return events
