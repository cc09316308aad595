"""Netlink framing, and the one thread that talks to the kernel for NAT.

Two halves.  The first is pure: a few functions that pack and walk netlink
attributes (``struct nlattr``, RFC 3549 2.3.2) and nfnetlink headers
(``struct nfgenmsg``), used by the message builders in
:mod:`hostednat.nat.nftables` and :mod:`hostednat.nat.conntrack` and by the
golden tests.  The second, :class:`NetlinkChannel`, is a blocking
``NETLINK_NETFILTER`` socket that sends prepared bytes and collects the
kernel's answers by sequence number; :class:`~hostednat.nat.kernel_nat.KernelNat`
owns one on its own thread.

Why not pyroute2's socket classes for the hot path: their generic
attribute encoder costs about 100 us per set element (measured on this
project's lab machine: 1,000 map elements in 0.10 s), which alone caps a
binding table at a few hundred installs and removals per second; their sync
API also runs an asyncio loop per call.  pyroute2 still builds the ruleset
(:func:`hostednat.nat.nftables.create_table`), decodes whatever tests
want to inspect, enters network namespaces and provides
:class:`NetlinkError`.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator, Sequence

import attrs
from pyroute2.netlink.exceptions import NetlinkError

__all__ = [
    "NetlinkChannel",
    "NetlinkError",
    "Reply",
    "attributes",
    "nest",
    "nfgen_message",
    "nla",
]

# include/uapi/linux/netlink.h
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# include/uapi/asm-generic/socket.h: set a buffer size past the sysctl caps.
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33

# include/uapi/linux/netfilter/nfnetlink.h
NFNETLINK_V0 = 0

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")

# The largest payload one attribute can carry: nla_len is 16 bits.
NLA_MAX_PAYLOAD = 0xFFFF - _NLATTR.size


def _pad(length: int) -> int:
    """Round ``length`` up to the 4-byte netlink alignment (NLA_ALIGN)."""
    return (length + 3) & ~3


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute: header, payload, zero padding to 4 bytes.

    :raises ValueError: the payload does not fit the 16-bit length.
    """
    if len(payload) > NLA_MAX_PAYLOAD:
        raise ValueError(f"attribute {kind} payload of {len(payload)} bytes")
    length = _NLATTR.size + len(payload)
    padding = b"\0" * (_pad(length) - length)
    return _NLATTR.pack(length, kind) + payload + padding


def nest(kind: int, *children: bytes) -> bytes:
    """A nested attribute holding already-packed ``children``."""
    return nla(kind | NLA_F_NESTED, b"".join(children))


def nfgen_message(
    msg_type: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0
) -> bytes:
    """A netlink message with an nfnetlink header in front of ``body``.

    ``res_id`` is big-endian on the wire (``struct nfgenmsg``); the port id
    is left 0 for the kernel to fill in.
    """
    nfgen = struct.pack("=BB", family, NFNETLINK_V0) + res_id.to_bytes(2, "big")
    length = _NLMSGHDR.size + len(nfgen) + len(body)
    return _NLMSGHDR.pack(length, msg_type, flags, seq, 0) + nfgen + body


def attributes(data: bytes | memoryview) -> Iterator[tuple[int, memoryview]]:
    """Walk packed attributes: ``(type without flag bits, payload)`` pairs."""
    view = memoryview(data)
    offset = 0
    while offset + _NLATTR.size <= len(view):
        length, kind = _NLATTR.unpack_from(view, offset)
        if length < _NLATTR.size:
            return
        yield kind & _NLA_TYPE_MASK, view[offset + _NLATTR.size : offset + length]
        offset += _pad(length)


def attribute_map(data: bytes | memoryview) -> dict[int, memoryview]:
    """The attributes of ``data`` by type; a repeated type keeps the last."""
    return dict(attributes(data))


@attrs.frozen
class Reply:
    """What the kernel answered to one request.

    :param error: 0 for an acknowledgement or the end of a dump, else the
        positive errno.
    :param messages: the payloads (after the netlink header) of the data
        messages that came before the acknowledgement, for gets and dumps.
    """

    error: int
    messages: tuple[bytes, ...] = ()


def split_messages(
    data: bytes | memoryview,
) -> Iterator[tuple[int, int, int, bytes]]:
    """Walk a buffer of netlink messages: ``(type, flags, seq, payload)``."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        payload = bytes(data[offset + _NLMSGHDR.size : offset + length])
        yield msg_type, flags, seq, payload
        offset += _pad(length)


class NetlinkChannel:
    """A blocking netfilter netlink socket, for one thread only.

    It is created in the network namespace of the thread that creates it.
    Sequence numbers start at 1 and wrap at 2**31.

    :param timeout: seconds to wait for the kernel before
        :meth:`exchange` raises ``TimeoutError``.
    :raises PermissionError: without CAP_NET_ADMIN the kernel accepts the
        socket but refuses every request; the error comes from the first
        request instead.
    """

    # Large buffers: a batch of removals brings one message per deleted
    # conntrack entry back at once.
    _BUFFER = 4 << 20
    _RECEIVE_CHUNK = 1 << 20

    def __init__(self, timeout: float = 5.0) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER
        )
        self._size_buffers()
        # Error answers echo only the failing header, not the whole batch.
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.bind((0, 0))
        self._sock.settimeout(timeout)
        self._seq = 0
        # recv() would allocate (and page in) a fresh chunk for every answer.
        self._buffer = bytearray(self._RECEIVE_CHUNK)
        self._view = memoryview(self._buffer)

    def _size_buffers(self) -> None:
        """Ask for :attr:`_BUFFER` bytes each way, past ``net.core.rmem_max``
        and ``wmem_max`` when the process may (CAP_NET_ADMIN): a capped
        receive buffer overflows on a long run of answers, and the kernel
        then drops them (ENOBUFS)."""
        for forced, plain in (
            (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
            (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
        ):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, forced, self._BUFFER)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, plain, self._BUFFER)

    def next_seq(self) -> int:
        """A fresh sequence number."""
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def exchange(
        self,
        data: bytes,
        expect: Sequence[int],
        abort_on: Sequence[int] = (),
        collect: Sequence[int] = (),
    ) -> dict[int, Reply]:
        """Send ``data`` and wait for the final answer to each of ``expect``.

        A final answer is an acknowledgement or error (NLMSG_ERROR) or the end
        of a dump (NLMSG_DONE).  An error answering one of ``abort_on`` (an
        nfnetlink batch header) ends the wait early: nothing else of that
        batch is processed.  Answers are matched by sequence number, so the
        messages of ``data`` must use distinct ones.

        :param collect: more sequence numbers whose data messages are kept
            although they get no final answer (gets sent without
            NLM_F_ACK, before a message of ``expect``: the kernel answers
            in order, so theirs are in when that one's is).
        :returns: the reply to each sequence number that got one, a message
            of ``collect`` answered with data included.
        :raises TimeoutError: the kernel did not answer in time.
        :raises OSError: the socket failed.
        """
        pending = set(expect)
        watched = set(abort_on)
        collected: dict[int, list[bytes]] = {seq: [] for seq in (*expect, *collect)}
        replies: dict[int, Reply] = {}
        self._sock.sendall(data)

        while pending:
            size = self._sock.recv_into(self._buffer)
            for msg_type, _flags, seq, payload in split_messages(self._view[:size]):
                if msg_type in (NLMSG_ERROR, NLMSG_DONE):
                    code = -_ERRNO.unpack_from(payload)[0] if payload else 0
                    replies[seq] = Reply(code, tuple(collected.get(seq, ())))
                    pending.discard(seq)
                    if code and seq in watched:
                        pending.clear()
                elif seq in collected:
                    collected[seq].append(payload)
        for seq in collect:
            if seq not in replies and collected[seq]:
                replies[seq] = Reply(0, tuple(collected[seq]))
        return replies

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def errno_name(code: int) -> str:
    """``"ENOENT"`` for 2; the number as text when it has no name."""
    return errno.errorcode.get(code, str(code))
