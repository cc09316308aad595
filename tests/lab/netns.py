"""Network namespaces for the end-to-end lab: the topology and its primitives.

The lab reproduces a box behind a home gateway that maps ports at random, an
edge host running hostednat, and an origin media server (see
``/work/shared/reference/lab-notes.md``)::

    box            gateway                     edge                    media
    192.168.77.10  192.168.77.1 | 198.51.100.2  198.51.100.1 | 203.0.113.1  203.0.113.10
    eth0 -------- lan0      wan0 --------- gw0 [acc0] core0 ---------- eth0
                                                 |       racs0 192.0.2.1
                                   intruder ---- intr0     |
                                   198.51.100.66 eth0    eth0 192.0.2.20
                                                         racs (optional)

- **gateway**: ``ip_forward=1``; nftables ``masquerade random`` on ``wan0``
  (random public ports, as carrier-grade NATs do: plain ``masquerade`` keeps
  the box's port when it is free and hides the problem); forward policy drop
  accepting ``ct state established,related`` and LAN to WAN; no conntrack
  helper.  Default route via the edge's access address.
- **edge**: where hostednat runs.  The access side is a bridge ``acc0``
  holding 198.51.100.1/24 with two ports, ``gw0`` towards the gateway and
  ``intr0`` towards the intruder: one shared access segment.  The core side
  is ``core0``.  ``ip_forward=1`` so that the control case (box straight to
  the media server, no hostednat) is routed; **no route to 192.168.77.0/24**,
  so the box's private network is reachable only through the gateway's NAPT.
- **media**: the origin RTSP server; default route via the edge core address.
- **intruder**: a third host on the access segment that is not the box and
  can reach the edge's access address; it has no default route.
- **racs** (only with ``Topology.create(racs=True)``): the SPDF simulator's
  host, on a link of its own to the edge (``racs0``, 192.0.2.0/24), where
  hostednat's Diameter client reaches it.  It has no default route: nothing
  but the edge can talk to it.

Namespace names are ``hn<pid>r<tag>-<role>``: the creating process id and a
random tag, so concurrent runs never collide and a later run can recognise
namespaces whose creator has died and remove them.  Interface names are
fixed inside each namespace, so they stay short.

Switching a *thread* into a namespace (``setns(2)`` acts on the calling
thread only) lets this process open sockets and write sysctls inside a
namespace without spawning ``ip netns exec``: a socket keeps the namespace
it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_DIRECTORY = Path("/run/netns")
NAME_PREFIX = "hn"
NAME_PATTERN = re.compile(rf"^{NAME_PREFIX}(?P<pid>\d+)r(?P<tag>[0-9a-f]+)-\w+$")

# <sched.h>: the namespace type for setns(2).
CLONE_NEWNET = 0x40000000

ROLES = ("box", "gateway", "edge", "media", "intruder")
RACS_ROLE = "racs"

ADDRESSES: Mapping[str, str] = {
    "box": "192.168.77.10",
    "gateway_lan": "192.168.77.1",
    "gateway_wan": "198.51.100.2",
    "edge_access": "198.51.100.1",
    "edge_core": "203.0.113.1",
    "media": "203.0.113.10",
    "intruder": "198.51.100.66",
}

RACS_ADDRESSES: Mapping[str, str] = {
    "edge_racs": "192.0.2.1",
    "racs": "192.0.2.20",
}

GATEWAY_RULESET = """\
table ip lab_gateway {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade random
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
    }
}
"""

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace command failed; the message carries its output."""


def run_command(argv: list[str], stdin: str | None = None) -> str:
    """Run a short setup command and return its standard output.

    :param argv: the command and its arguments.
    :param stdin: text written to the command's standard input.
    :raises NetnsError: when the command exits with a non-zero status.
    """
    completed = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if completed.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} exited {completed.returncode}:"
            f" {completed.stderr.strip()}\n{stdin or ''}"
        )
    return completed.stdout


def run_in_netns(netns: str, function: Callable[[], T]) -> T:
    """Call a function on a fresh thread switched into a namespace.

    :param netns: the name of a namespace under ``/run/netns``.
    :param function: what to call; sockets it creates belong to ``netns``.
    :returns: what ``function`` returned.
    :raises OSError: when the namespace cannot be entered.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def enter_and_call() -> None:
        try:
            descriptor = os.open(NETNS_DIRECTORY / netns, os.O_RDONLY)
            try:
                if _libc.setns(descriptor, CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, os.strerror(error), netns)
            finally:
                os.close(descriptor)
            outcome.append(function())
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=enter_and_call, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def open_socket(
    netns: str | None,
    kind: socket.SocketKind = socket.SOCK_DGRAM,
    family: socket.AddressFamily = socket.AF_INET,
) -> socket.socket:
    """Create a socket inside a namespace, or in this process's own.

    :param netns: the namespace name, or ``None`` for the current one.
    :param kind: ``SOCK_DGRAM`` or ``SOCK_STREAM``.
    :param family: the address family.
    :returns: an unbound socket that stays in ``netns``.
    """
    if netns is None:
        return socket.socket(family, kind)
    return run_in_netns(netns, lambda: socket.socket(family, kind))


def write_sysctl(netns: str, key: str, value: str) -> None:
    """Set a ``net.*`` sysctl inside a namespace.

    :param netns: the namespace name.
    :param key: the dotted sysctl name, e.g. ``net.ipv4.ip_forward``.
    :param value: the value to write.
    """
    path = Path("/proc/sys", *key.split("."))
    run_in_netns(netns, lambda: path.write_text(value))


def list_namespaces() -> list[str]:
    """Name every namespace under ``/run/netns``."""
    if not NETNS_DIRECTORY.is_dir():
        return []
    return sorted(entry.name for entry in NETNS_DIRECTORY.iterdir())


def namespace_pids(netns: str) -> list[int]:
    """List the processes running inside a namespace.

    :param netns: the namespace name.
    """
    output = run_command(["ip", "netns", "pids", netns])
    return [int(word) for word in output.split()]


def kill_namespace_processes(netns: str) -> None:
    """SIGKILL what still runs inside one of the lab's own namespaces.

    Only ever called on namespaces this module names (``hn<pid>r<tag>-*``),
    whose processes the lab started; normally there are none left, because
    every spawned process is stopped first.

    :param netns: the namespace name.
    """
    try:
        pids = namespace_pids(netns)
    except NetnsError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def delete_namespaces(names: list[str]) -> None:
    """Kill leftover processes in namespaces, then delete the namespaces.

    Deleting a namespace also destroys the veth ends and bridges inside it.
    Names that no longer exist are skipped.

    :param names: namespace names.
    """
    present = set(list_namespaces())
    doomed = [name for name in names if name in present]
    for name in doomed:
        kill_namespace_processes(name)
    if doomed:
        script = "".join(f"netns delete {name}\n" for name in doomed)
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )


def creator_alive(pid: int) -> bool:
    """Tell whether the process that named a namespace still runs.

    :param pid: the process id embedded in the namespace name.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # proc(5): the state follows the parenthesised command name; a killed
    # creator may linger as a zombie until its parent reaps it.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces left behind by runs that have died.

    A namespace is stale when its name follows :data:`NAME_PATTERN` and the
    process id in it is not running; namespaces of a live concurrent run
    are left alone.

    :returns: the names that were removed.
    """
    stale = []
    for name in list_namespaces():
        match = NAME_PATTERN.match(name)
        if match and not creator_alive(int(match["pid"])):
            stale.append(name)
    delete_namespaces(stale)
    return stale


@dataclass
class Topology:
    """The namespaces of the lab, their links, addresses and rules.

    Build one with :meth:`create` and always :meth:`destroy` it.

    :ivar tag: the unique part of every namespace name.
    :ivar racs: whether the optional ``racs`` host is part of it.
    :ivar addr: the lab's addresses by name (see :data:`ADDRESSES`, and
        :data:`RACS_ADDRESSES` with the ``racs`` host).
    """

    tag: str = field(
        default_factory=lambda: f"{NAME_PREFIX}{os.getpid()}r{secrets.token_hex(3)}"
    )
    racs: bool = False
    addr: Mapping[str, str] = field(default_factory=lambda: dict(ADDRESSES))

    def __post_init__(self) -> None:
        if self.racs:
            self.addr = {**self.addr, **RACS_ADDRESSES}

    @property
    def roles(self) -> tuple[str, ...]:
        """The hosts of this topology: :data:`ROLES`, plus ``racs`` if built."""
        return (*ROLES, RACS_ROLE) if self.racs else ROLES

    def ns(self, role: str) -> str:
        """Name the namespace of one lab host.

        :param role: one of :attr:`roles`.
        :raises KeyError: for an unknown role.
        """
        if role not in self.roles:
            raise KeyError(f"no lab host {role!r}; hosts are {', '.join(self.roles)}")
        return f"{self.tag}-{role}"

    def names(self) -> list[str]:
        """Name every namespace of this topology."""
        return [self.ns(role) for role in self.roles]

    @classmethod
    def create(cls, racs: bool = False) -> Topology:
        """Build the topology; on any failure remove what was built.

        :param racs: also build the ``racs`` host for the SPDF simulator.
        :raises NetnsError: when a command fails.
        """
        topology = cls(racs=racs)
        try:
            topology._build()
        except BaseException:
            topology.destroy()
            raise
        return topology

    def destroy(self) -> None:
        """Delete every namespace of this topology, with what runs inside."""
        delete_namespaces(self.names())

    def _build(self) -> None:
        box, gateway, edge = self.ns("box"), self.ns("gateway"), self.ns("edge")
        media, intruder = self.ns("media"), self.ns("intruder")
        run_command(
            ["ip", "-batch", "-"],
            stdin="".join(f"netns add {name}\n" for name in self.names())
            + self._veth("eth0", box, "lan0", gateway)
            + self._veth("wan0", gateway, "gw0", edge)
            + self._veth("eth0", intruder, "intr0", edge)
            + self._veth("core0", edge, "eth0", media),
        )

        a = self.addr
        self._configure(
            box,
            f"addr add {a['box']}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {a['gateway_lan']}",
        )
        self._configure(
            gateway,
            f"addr add {a['gateway_lan']}/24 dev lan0",
            f"addr add {a['gateway_wan']}/24 dev wan0",
            "link set lan0 up",
            "link set wan0 up",
            f"route add default via {a['edge_access']}",
        )
        self._configure(
            edge,
            "link add acc0 type bridge forward_delay 0 stp_state 0",
            "link set gw0 master acc0",
            "link set intr0 master acc0",
            f"addr add {a['edge_access']}/24 dev acc0",
            f"addr add {a['edge_core']}/24 dev core0",
            "link set gw0 up",
            "link set intr0 up",
            "link set acc0 up",
            "link set core0 up",
        )
        self._configure(
            media,
            f"addr add {a['media']}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {a['edge_core']}",
        )
        self._configure(
            intruder, f"addr add {a['intruder']}/24 dev eth0", "link set eth0 up"
        )
        if self.racs:
            self._build_racs()

        for name in (gateway, edge):
            write_sysctl(name, "net.ipv4.ip_forward", "1")
        run_command(
            ["ip", "netns", "exec", gateway, "nft", "-f", "-"],
            stdin=GATEWAY_RULESET,
        )

    def _build_racs(self) -> None:
        edge, racs = self.ns("edge"), self.ns(RACS_ROLE)
        run_command(
            ["ip", "-batch", "-"], stdin=self._veth("racs0", edge, "eth0", racs)
        )
        a = self.addr
        self._configure(
            edge, f"addr add {a['edge_racs']}/24 dev racs0", "link set racs0 up"
        )
        self._configure(racs, f"addr add {a['racs']}/24 dev eth0", "link set eth0 up")

    @staticmethod
    def _veth(name: str, netns: str, peer: str, peer_netns: str) -> str:
        return (
            f"link add {name} netns {netns} type veth"
            f" peer name {peer} netns {peer_netns}\n"
        )

    @staticmethod
    def _configure(netns: str, *commands: str) -> None:
        script = "link set lo up\n" + "".join(f"{line}\n" for line in commands)
        run_command(["ip", "-n", netns, "-batch", "-"], stdin=script)
