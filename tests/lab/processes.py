"""Real processes for the end-to-end tests: bounded runs and background servers.

Every process starts in a new session (its own process group), so a Ctrl-C
on the terminal reaches only pytest, and stopping a process also stops what
it started (``timeout`` around ``gst-launch-1.0``, for instance).  A group is
signalled only while its leader is still unreaped, so its id cannot have
been reused by an unrelated process.

A process can run inside a lab namespace through ``ip netns exec``, which
replaces itself with the command: the process id is the command's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .netns import open_socket

LAB_DIRECTORY = Path(__file__).resolve().parent
MEDIA_SERVER_SCRIPT = LAB_DIRECTORY / "media_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"

# The directory of the JSON log observer twistd loads with --logger; only
# it goes on PYTHONPATH, so that twistd still imports the installed package.
OBSERVER_DIRECTORY = LAB_DIRECTORY / "twistd_observer"
JSON_OBSERVER = "lab_json_events.observer"
RECORD_SEPARATOR = "\x1e"

# Seconds a process gets to exit after SIGTERM before it is killed.
STOP_GRACE = 5.0

Readiness = str | re.Pattern[str] | Callable[[], bool] | None


class ProcessFailed(RuntimeError):
    """A process exited or missed its deadline; the message has its output."""


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix a command so that it runs inside a namespace.

    :param netns: the namespace name, or ``None`` to run it here.
    :param argv: the command and its arguments.
    """
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", netns, *argv]


def tail(text: str, lines: int = 40) -> str:
    """Keep the last lines of a process's output for an error message.

    :param text: the whole output.
    :param lines: how many lines to keep.
    """
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Finished:
    """What a bounded run left behind.

    :ivar returncode: the exit status (negative: killed by that signal).
    :ivar timed_out: whether the run was killed at its deadline.
    """

    argv: list[str]
    returncode: int
    timed_out: bool
    elapsed: float
    stdout: str
    stderr: str


def run_bounded(
    argv: Sequence[str], timeout: float, netns: str | None = None
) -> Finished:
    """Run a command to completion, killing its group at the deadline.

    :param argv: the command and its arguments.
    :param timeout: seconds before the whole process group gets SIGKILL.
    :param netns: the namespace to run in, if any.
    :returns: the exit status and both outputs, also after a timeout.
    """
    command = in_netns(netns, argv)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(process, signal.SIGKILL)
        stdout, stderr = process.communicate()
    finally:
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    return Finished(
        argv=command,
        returncode=process.returncode,
        timed_out=timed_out,
        elapsed=time.monotonic() - started,
        stdout=stdout,
        stderr=stderr,
    )


def _leader_exited(process: subprocess.Popen[str]) -> bool | None:
    """Look at a group leader without reaping it.

    ``waitid`` with ``WNOWAIT`` leaves an exited leader a zombie, and a
    zombie keeps its process id (the group id) reserved.

    :returns: ``False`` while it runs, ``True`` once it has exited but is
        not reaped yet, ``None`` once reaped: its group id may then belong
        to another process.
    """
    if process.returncode is not None:
        return None
    try:
        state = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    return state is not None


def _signal_group(process: subprocess.Popen[str], number: int) -> None:
    """Send a signal to a process's group while its id is still reserved."""
    if _leader_exited(process) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, number)


class BackgroundProcess:
    """A long-running process whose output lines are collected as they come.

    :ivar argv: the command as started, with any ``ip netns exec`` prefix.
    :ivar stdout_lines: standard output so far, one entry per line.
    :ivar stderr_lines: standard error so far, one entry per line.
    """

    def __init__(
        self, argv: Sequence[str], netns: str | None = None, cwd: Path | None = None
    ) -> None:
        """Start the process.

        :param argv: the command and its arguments.
        :param netns: the namespace to run in, if any.
        :param cwd: the working directory.
        """
        self.argv = in_netns(netns, argv)
        self.netns = netns
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=cwd,
            start_new_session=True,
        )
        self._readers = [
            threading.Thread(
                target=self._collect,
                args=(stream, lines),
                daemon=True,
                name=f"output-{self._process.pid}",
            )
            for stream, lines in (
                (self._process.stdout, self.stdout_lines),
                (self._process.stderr, self.stderr_lines),
            )
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped, else ``None``."""
        return self._process.returncode

    def running(self) -> bool:
        """Tell whether the process has not exited yet."""
        return _leader_exited(self._process) is False

    def output(self) -> str:
        """Both outputs so far, for a diagnostic message."""
        with self._changed:
            return (
                f"$ {' '.join(self.argv)}\n--- stdout\n"
                + tail("\n".join(self.stdout_lines))
                + "\n--- stderr\n"
                + tail("\n".join(self.stderr_lines))
            )

    def wait_ready(
        self, ready: Readiness, deadline: float = 15.0
    ) -> re.Match[str] | None:
        """Wait until the process is ready.

        :param ready: a pattern searched in standard output lines, or a
            probe called repeatedly until it returns true, or ``None``.
        :param deadline: seconds to wait.
        :returns: the match of a pattern, else ``None``.
        :raises ProcessFailed: when the process exits first or the deadline
            passes; the message carries its output.
        """
        if ready is None:
            return None
        expires = time.monotonic() + deadline
        while True:
            if callable(ready):
                if ready():
                    return None
                found = None
            else:
                found = self._search(ready)
                if found is not None:
                    return found
            if not self.running():
                self._wait_readers()
                raise ProcessFailed(f"exited before ready\n{self.output()}")
            if time.monotonic() >= expires:
                raise ProcessFailed(f"not ready within {deadline} s\n{self.output()}")
            with self._changed:
                self._changed.wait(timeout=0.05)

    def stdout_so_far(self) -> list[str]:
        """A copy of the standard output lines collected so far."""
        with self._changed:
            return list(self.stdout_lines)

    def lines_matching(self, pattern: str) -> list[str]:
        """Standard output lines so far that contain a pattern.

        :param pattern: a regular expression.
        """
        with self._changed:
            return [line for line in self.stdout_lines if re.search(pattern, line)]

    def wait(self, timeout: float) -> int | None:
        """Wait for the process to exit on its own, without signalling it.

        :param timeout: seconds to wait.
        :returns: the exit status, or ``None`` if it still runs.
        """
        expires = time.monotonic() + timeout
        while self.running() and time.monotonic() < expires:
            time.sleep(0.05)
        if self.running():
            return None
        self._process.wait()
        self._wait_readers()
        return self._process.returncode

    def kill(self) -> int:
        """SIGKILL the group at once, as a crash would end it; reap.

        :returns: the exit status.
        """
        if self._process.returncode is None:
            _signal_group(self._process, signal.SIGKILL)
            self._process.wait()
        self._wait_readers()
        return self._process.returncode

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM the group, then SIGKILL it after a grace period; reap.

        Safe to call more than once and after the process has exited.

        :param grace: seconds between SIGTERM and SIGKILL.
        :returns: the exit status.
        """
        if self._process.returncode is None:
            if self.running():
                _signal_group(self._process, signal.SIGTERM)
            expires = time.monotonic() + grace
            while self.running() and time.monotonic() < expires:
                time.sleep(0.02)
            # Also catches helpers that outlived the leader.
            _signal_group(self._process, signal.SIGKILL)
            self._process.wait()
        self._wait_readers()
        return self._process.returncode

    def _search(self, pattern: str | re.Pattern[str]) -> re.Match[str] | None:
        with self._changed:
            for line in self.stdout_lines:
                found = re.search(pattern, line)
                if found is not None:
                    return found
        return None

    def _collect(self, stream: IO[str] | None, lines: list[str]) -> None:
        if stream is None:
            return
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _wait_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=2.0)


def tcp_accepts(host: str, port: int, netns: str | None = None) -> bool:
    """Tell whether a TCP connection to a listener succeeds right now.

    :param host: the listener's address.
    :param port: the listener's port.
    :param netns: the namespace to connect from, if any.
    """
    probe = open_socket(netns, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect((host, port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def free_port(
    host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM
) -> int:
    """Ask the kernel for a port that is free right now.

    :param host: the address to bind.
    :param kind: ``SOCK_STREAM`` or ``SOCK_DGRAM``.
    """
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_media_server(
    address: str,
    port: int = 0,
    netns: str | None = None,
    mount: str = "/test",
    shared: bool = False,
    deadline: float = 15.0,
    bandwidth_kbps: int = 0,
) -> tuple[BackgroundProcess, int]:
    """Start ``media_server.py`` on Debian's Python and wait for ``READY``.

    :param address: the address to listen on.
    :param port: the port, or 0 for one the kernel picks.
    :param netns: the namespace to run in, if any.
    :param mount: the mount path.
    :param shared: whether to use a shared media factory.
    :param deadline: seconds to wait for the listener.
    :param bandwidth_kbps: announce ``b=AS`` with this value; 0 for none.
    :returns: the process and the port it listens on.
    :raises ProcessFailed: when the server does not come up.
    """
    argv = [
        SYSTEM_PYTHON,
        str(MEDIA_SERVER_SCRIPT),
        "--address",
        address,
        "--port",
        str(port),
        "--mount",
        mount,
    ]
    if shared:
        argv.append("--shared")
    if bandwidth_kbps:
        argv += ["--bandwidth-kbps", str(bandwidth_kbps)]
    server = BackgroundProcess(argv, netns=netns)
    try:
        found = server.wait_ready(r"^READY (\d+)$", deadline)
    except BaseException:
        server.stop()
        raise
    assert found is not None
    return server, int(found[1])


def twistd_path() -> str:
    """Find ``twistd`` beside the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / "twistd"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        raise ProcessFailed(f"no twistd beside {sys.executable} nor on PATH")
    return found


def twistd_argv(plugin: str, config_path: Path, json_events: bool) -> list[str]:
    """The command running a twistd plugin in the foreground.

    :param plugin: ``hostednat`` or ``hostednat-spdf``.
    :param config_path: the TOML file given with ``--config``.
    :param json_events: log structured events as JSON lines (see
        :func:`logged_events`) instead of text.
    """
    argv = [twistd_path(), "-n", "--pidfile="]
    if json_events:
        argv = ["env", f"PYTHONPATH={OBSERVER_DIRECTORY}", *argv]
        argv.append(f"--logger={JSON_OBSERVER}")
    else:
        argv.append("--logfile=-")
    return [*argv, plugin, "--config", str(config_path)]


def start_twistd(
    plugin: str,
    config_text: str,
    directory: Path,
    listen: Sequence[tuple[str, int]],
    netns: str | None = None,
    deadline: float = 15.0,
    json_events: bool = False,
) -> BackgroundProcess:
    """Write a configuration and run a twistd plugin under ``twistd -n``.

    Readiness is every listed TCP listener accepting a connection, probed
    from the same namespace, since the log format is not a contract.

    :param plugin: ``hostednat`` or ``hostednat-spdf``.
    :param config_text: the TOML configuration.
    :param directory: where to write ``<plugin>.toml`` (also the working
        directory of the process).
    :param listen: the addresses and ports of the listeners to probe.
    :param netns: the namespace to run in, if any.
    :param deadline: seconds to wait for the listeners.
    :param json_events: log events as JSON lines (see :func:`logged_events`).
    :returns: the running process.
    :raises ProcessFailed: when it exits or does not listen in time; the
        message carries its output.
    """
    config_path = directory / f"{plugin}.toml"
    config_path.write_text(config_text)
    argv = twistd_argv(plugin, config_path, json_events)
    process = BackgroundProcess(argv, netns=netns, cwd=directory)
    try:
        process.wait_ready(
            lambda: all(tcp_accepts(host, port, netns) for host, port in listen),
            deadline,
        )
    except BaseException:
        process.stop()
        raise
    return process


def start_hostednat(
    config_text: str,
    directory: Path,
    listen: tuple[str, int],
    netns: str | None = None,
    deadline: float = 15.0,
    json_events: bool = False,
) -> BackgroundProcess:
    """Write a configuration and run hostednat under ``twistd -n``.

    Readiness is the RTSP listener accepting a TCP connection, probed from
    the same namespace, since the proxy's log format is not a contract.

    :param config_text: the TOML configuration.
    :param directory: where to write ``hostednat.toml`` (also the working
        directory of the process).
    :param listen: the address and port of the RTSP listener to probe.
    :param netns: the namespace to run in, if any.
    :param deadline: seconds to wait for the listener.
    :param json_events: log events as JSON lines (see :func:`logged_events`).
    :returns: the running process.
    :raises ProcessFailed: when it exits or does not listen in time; the
        message carries its output.
    """
    return start_twistd(
        "hostednat", config_text, directory, [listen], netns, deadline, json_events
    )


def logged_events(process: BackgroundProcess) -> list[dict[str, Any]]:
    """The events a twistd process started with ``json_events`` logged so far.

    Lines that are not JSON event records (a traceback written straight to
    the terminal, say) are skipped.

    :param process: the twistd process.
    """
    found = []
    for line in process.stdout_so_far():
        text = line.lstrip(RECORD_SEPARATOR)
        if not text.startswith("{"):
            continue
        try:
            event = json.loads(text)
        except ValueError:
            continue
        if isinstance(event, dict):
            found.append(event)
    return found


def events_named(
    process: BackgroundProcess, key: str, **fields: Any
) -> list[dict[str, Any]]:
    """Logged events with ``hostednat_event == key`` and the given fields.

    :param process: a twistd process started with ``json_events``.
    :param key: a key of ``hostednat.events`` or ``hostednat.diameter.log``.
    :param fields: field values the events must have.
    """
    return [
        event
        for event in logged_events(process)
        if event.get("hostednat_event") == key
        and all(event.get(name) == value for name, value in fields.items())
    ]


def wait_for_event(
    process: BackgroundProcess,
    key: str,
    deadline: float = 10.0,
    count: int = 1,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Wait until a twistd process has logged ``count`` events of a key.

    :param process: a twistd process started with ``json_events``.
    :param key: the ``hostednat_event`` key.
    :param deadline: seconds to wait.
    :param count: how many such events are awaited.
    :param fields: field values the events must have.
    :returns: the matching events.
    :raises ProcessFailed: when the process exits or the deadline passes;
        the message carries the events seen and the process's output.
    """
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = events_named(process, key, **fields)
        return len(found) >= count

    try:
        process.wait_ready(enough, deadline)
    except ProcessFailed as failure:
        seen = sorted({str(e.get("hostednat_event")) for e in logged_events(process)})
        raise ProcessFailed(
            f"{count} {key} event(s) {fields or ''} awaited, {len(found)} seen;"
            f" keys logged: {', '.join(seen)}\n{failure}"
        ) from None
    return found
