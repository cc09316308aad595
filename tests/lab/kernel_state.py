"""What the kernel holds for hostednat in the edge, read with nft and conntrack.

The kernel-backend tests judge hostednat by the edge's own state, read the
way an operator would: ``nft -j list map ip <table> <map>`` for the map
elements, ``conntrack -L -p udp --dst-nat`` for the NATed entries (with
their per-direction packet counts, since the table turns conntrack
accounting on).  Nothing here changes that state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .harness import Lab

TABLE = "hostednat"
MAPS = ("core", "access")

_FIELD = re.compile(r"(src|dst|sport|dport|packets|bytes)=(\S+)")


@dataclass(frozen=True)
class NatEntry:
    """One NATed UDP conntrack entry of the edge.

    :ivar original: source, destination, sport, dport of the first packet.
    :ivar reply: the same four of the expected answer (after NAT).
    :ivar packets: original and reply packet counts (accounting on), or 0.
    """

    original: tuple[str, str, int, int]
    reply: tuple[str, str, int, int]
    packets: tuple[int, int]


def map_elements(lab: Lab, name: str, table: str = TABLE) -> list[Any]:
    """The elements of one of hostednat's maps, as nft's JSON gives them.

    :param name: ``core`` or ``access``.
    :raises AssertionError: when nft cannot list the map (no table).
    """
    finished = lab.run("edge", ["nft", "-j", "list", "map", "ip", table, name])
    assert finished.returncode == 0, finished.stderr
    listing = json.loads(finished.stdout)["nftables"]
    found = [item["map"] for item in listing if "map" in item]
    return list(found[0].get("elem", [])) if found else []


def element_count(lab: Lab, table: str = TABLE) -> int:
    """Elements in both maps together."""
    return sum(len(map_elements(lab, name, table)) for name in MAPS)


def nat_entries(lab: Lab) -> list[NatEntry]:
    """Every UDP conntrack entry of the edge that has a destination NAT."""
    argv = ["conntrack", "-L", "-f", "ipv4", "-p", "udp", "--dst-nat"]
    finished = lab.run("edge", argv)
    assert finished.returncode == 0, finished.stderr
    return [entry for line in finished.stdout.splitlines() if (entry := _entry(line))]


def _entry(line: str) -> NatEntry | None:
    fields = _FIELD.findall(line)
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key, []).append(value)
    if len(values.get("src", [])) < 2:
        return None

    def side(index: int) -> tuple[str, str, int, int]:
        return (
            values["src"][index],
            values["dst"][index],
            int(values["sport"][index]),
            int(values["dport"][index]),
        )

    packets = [int(count) for count in values.get("packets", [])] + [0, 0]
    return NatEntry(side(0), side(1), (packets[0], packets[1]))
