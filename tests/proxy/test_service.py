"""The service wiring: backend choice, startup order, fatal start, shutdown."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from hostednat import events
from hostednat.config import Config, ConfigError, parse
from hostednat.nat import kernel
from hostednat.nat.kernel import KernelBackendUnavailable, KernelBindingTable
from hostednat.nat.kernel_nat import KernelNatError
from hostednat.nat.userspace import UserspaceBindingTable
from hostednat.proxy.service import (
    ProxyService,
    build_service,
    exit_after_stop,
    make_binding_table,
)

from .fakes import RecordingBindingTable

CONFIG = """
[rtsp]
listen = ["tcp:8554:interface=127.0.0.1"]
[[routes]]
prefix = "/"
upstream = "rtsp://127.0.0.1:8555/"
[nat]
backend = "{backend}"
"""


def config(backend: str = "userspace") -> Config:
    """A loopback configuration with the given ``[nat] backend``."""
    return parse(tomllib.loads(CONFIG.format(backend=backend)), "test.toml")


class StartingTable(RecordingBindingTable):
    """A binding table whose start the test finishes by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.started: Deferred[object] = Deferred()
        self.closed = 0

    def start(self) -> Deferred[object]:
        """The Deferred the test fires or fails."""
        return self.started

    def close(self) -> Deferred[None]:
        """Count the close."""
        self.closed += 1
        return succeed(None)


class Service:
    """A built service on a memory reactor, with a recorded fatal status."""

    def __init__(self, bindings: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.exits: list[int] = []
        self.bindings = bindings
        top = build_service(
            config(), self.reactor, bindings=bindings, fatal=self.exits.append
        )
        (proxy,) = list(top)
        assert isinstance(proxy, ProxyService)
        self.proxy = proxy

    def listening(self) -> list[int]:
        """Ports the service listens on."""
        return [port for port, *_rest in self.reactor.tcpServers]


def test_userspace_backend_is_the_default() -> None:
    """Without a kernel backend configured the userspace relay is built."""
    table = make_binding_table(config(), MemoryReactorClock())
    assert type(table) is UserspaceBindingTable


def test_kernel_backend_builds_the_kernel_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``backend = "kernel"`` with CAP_NET_ADMIN builds the kernel table."""
    monkeypatch.setattr(kernel, "check_capability", lambda: None)
    table = make_binding_table(config("kernel"), MemoryReactorClock())
    assert isinstance(table, KernelBindingTable)


def test_kernel_backend_without_capability_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without CAP_NET_ADMIN the error names the key and the capability."""

    def refuse() -> None:
        raise KernelBackendUnavailable("needs CAP_NET_ADMIN")

    monkeypatch.setattr(kernel, "check_capability", refuse)
    with pytest.raises(ConfigError) as caught:
        make_binding_table(config("kernel"), MemoryReactorClock())
    assert caught.value.key == "nat.backend"
    assert "CAP_NET_ADMIN" in str(caught.value)


def test_listening_waits_for_the_table_to_start() -> None:
    """Nothing listens until the table's start has fired."""
    service = Service(StartingTable())
    service.proxy.startService()
    assert service.listening() == []

    service.bindings.started.callback(None)
    assert service.listening() == [8554]
    assert service.exits == []


def test_table_without_start_listens_at_once() -> None:
    """A table with no start (the userspace relay) listens right away."""
    service = Service(RecordingBindingTable())
    service.proxy.startService()
    assert service.listening() == [8554]


def test_failed_start_is_fatal_and_nothing_listens(
    fail_on_logged_errors: list[dict[str, Any]],
) -> None:
    """A table that cannot start stops the process with status 1, logged."""
    service = Service(StartingTable())
    service.proxy.startService()
    service.bindings.started.errback(KernelNatError("create table hostednat", 1))

    assert service.listening() == []
    assert service.exits == [1]
    (logged,) = fail_on_logged_errors
    assert logged["hostednat_event"] == events.SERVICE_START_FAILED
    assert "EPERM" in logged["error"]
    assert "log_failure" not in logged
    fail_on_logged_errors.clear()


def test_stop_closes_the_table() -> None:
    """Stopping the service closes the binding table (kernel: deletes it)."""
    service = Service(StartingTable())
    service.proxy.startService()
    service.bindings.started.callback(None)
    service.proxy.stopService()
    assert service.bindings.closed == 1


def drop_net_admin() -> list[str]:
    """A command prefix that runs a program without CAP_NET_ADMIN."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root, and no setpriv to drop CAP_NET_ADMIN with")
    return [setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin"]


def test_twistd_refuses_kernel_backend_without_capability(tmp_path: Path) -> None:
    """twistd with the kernel backend and no CAP_NET_ADMIN exits non-zero
    with one line naming the key and the capability, and no traceback."""
    twistd = Path(sys.executable).parent / "twistd"
    if not twistd.exists():
        pytest.skip(f"no twistd beside {sys.executable}")
    path = tmp_path / "kernel.toml"
    path.write_text(CONFIG.format(backend="kernel"))
    argv = [str(twistd), "-n", "--pidfile=", "--logfile=-", "hostednat"]
    argv += ["--config", str(path)]

    finished = subprocess.run(
        [*drop_net_admin(), *argv], capture_output=True, text=True, timeout=60
    )

    assert finished.returncode == 1, finished
    assert f"{path}: nat.backend:" in finished.stderr
    assert "CAP_NET_ADMIN" in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout


def test_exit_after_stop_stops_now_and_exits_with_the_status_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reactor stops at once; the status is given at interpreter exit."""
    at_exit: list[Callable[[], None]] = []
    exits: list[int] = []
    monkeypatch.setattr(atexit, "register", at_exit.append)
    monkeypatch.setattr(os, "_exit", exits.append)
    reactor = MemoryReactorClock()
    reactor.running = True

    exit_after_stop(reactor, 1)
    assert reactor.hasStopped
    assert exits == []
    (leave,) = at_exit
    leave()
    assert exits == [1]
