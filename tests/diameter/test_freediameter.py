"""Interoperability with Debian's freeDiameterd, checked by tshark.

freeDiameterd binds every address it finds, so it runs in a network
namespace of its own (a veth pair inside it carries 192.0.2.1; both ends
stay in the namespace), and so does hostednat's client
(``freediameter/af_client.py``) and the capture.  The extension
``freediameter/gq_answer.c`` is compiled into a temporary directory.

Needs root, ``freeDiameterd``, ``libfreediameter-dev``, ``gcc``, ``openssl``,
``tcpdump`` and ``tshark``; skips without them unless
``HOSTEDNAT_REQUIRE_LAB=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

HERE = Path(__file__).parent / "freediameter"
ROOT = Path(__file__).parents[2]
ADDRESS = "192.0.2.1"
TOOLS = ("freeDiameterd", "gcc", "openssl", "tcpdump", "tshark", "ip")

CONFIG = """\
Identity = "spdf.racs.example.net";
Realm = "racs.example.net";
Port = 3868;
SecPort = 0;
No_SCTP;
No_IPv6;
ListenOn = "{address}";
TwTimer = 20;
TLS_Cred = "{dir}/cert.pem", "{dir}/key.pem";
TLS_CA = "{dir}/cert.pem";
LoadExtension = "/usr/lib/freeDiameter/acl_wl.fdx" : "{dir}/acl.conf";
LoadExtension = "{dir}/gq_answer.fdx";
"""


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/include/freeDiameter/extension.h").exists():
        return "libfreediameter-dev is not installed"
    return None


def run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh network namespace with 192.0.2.1 up, removed afterwards."""
    reason = missing()
    if reason is not None:
        if os.environ.get("HOSTEDNAT_REQUIRE_LAB") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"hnfd{os.getpid()}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        run("ip", "-n", name, "addr", "add", f"{ADDRESS}/24", "dev", "v0")
        run("ip", "-n", name, "link", "set", "v0", "up")
        run("ip", "-n", name, "link", "set", "v1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def prepare(directory: Path) -> None:
    """Compile the extension; write a certificate, the ACL and the config."""
    run(
        "gcc",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Werror",
        "-o",
        str(directory / "gq_answer.fdx"),
        str(HERE / "gq_answer.c"),
        "-lfdcore",
        "-lfdproto",
    )
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(directory / "key.pem"),
        "-out",
        str(directory / "cert.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=spdf.racs.example.net",
    )
    (directory / "acl.conf").write_text("ALLOW_IPSEC af1.iptv.example.net\n")
    (directory / "fd.conf").write_text(CONFIG.format(address=ADDRESS, dir=directory))


def start(namespace: str, *argv: str, log: Path) -> subprocess.Popen[bytes]:
    stream = log.open("wb")
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *argv], stdout=stream, stderr=stream
    )


def wait_listening(namespace: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        found = run("ip", "netns", "exec", namespace, "ss", "-ltn").stdout
        if f"{ADDRESS}:3868" in found:
            return
        time.sleep(0.1)
    raise AssertionError("freeDiameterd did not listen")


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def exchange(namespace: str, tmp_path: Path) -> tuple[dict[str, object], Path]:
    """Run the AF client against freeDiameterd once, captured."""
    prepare(tmp_path)
    pcap = tmp_path / "diameter.pcap"
    capture = start(
        namespace,
        "tcpdump",
        "-i",
        "any",
        "-s",
        "0",
        "-U",
        "--immediate-mode",
        "-w",
        str(pcap),
        "tcp",
        "port",
        "3868",
        log=tmp_path / "tcpdump.log",
    )
    daemon = start(
        namespace,
        "freeDiameterd",
        "-c",
        str(tmp_path / "fd.conf"),
        log=tmp_path / "freediameter.log",
    )
    try:
        wait_listening(namespace, time.monotonic() + 10)
        client = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                str(HERE / "af_client.py"),
                ADDRESS,
                "3868",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        time.sleep(1.0)
    finally:
        stop(daemon, signal.SIGTERM)
        stop(capture, signal.SIGINT)
    assert client.returncode == 0, client.stdout + client.stderr
    report: dict[str, object] = json.loads(client.stdout.strip().splitlines()[-1])
    return report, pcap


def tshark(pcap: Path, *argv: str) -> str:
    return run("tshark", "-r", str(pcap), "-d", "tcp.port==3868,diameter", *argv).stdout


def test_freediameter_exchanges_and_tshark_decodes(
    exchange: tuple[dict[str, object], Path],
) -> None:
    """CER/CEA, AAR, STR, DWR/DWA and DPR/DPA complete, clean and named in tshark."""
    report, pcap = exchange
    assert report == {"opened": True, "aar": "admitted", "str": "sent", "stopped": True}

    fields = tshark(
        pcap,
        "-Y",
        "diameter",
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
        "-e",
        "diameter.cmd.code",
        "-e",
        "diameter.flags.request",
        "-e",
        "diameter.Result-Code",
    )
    sent = set()
    answered = set()
    for line in fields.splitlines():
        port, code, request, result = (line.split("\t") + [""] * 4)[:4]
        if port == "3868" and request in ("1", "True"):
            sent.add(int(code))
        if port != "3868" and request in ("0", "False") and result == "2001":
            answered.add(int(code))
    assert {257, 265, 275, 280, 282} <= sent
    assert {257, 265, 275, 280, 282} <= answered

    broken = tshark(
        pcap, "-Y", "diameter && (_ws.malformed || _ws.expert.severity==error)"
    )
    assert broken.strip() == ""

    ours = tshark(pcap, "-Y", "diameter && tcp.dstport==3868", "-V")
    for name in (
        "Binding-information(450)",
        "Binding-Input-List(451)",
        "V4-Transport-Address(454)",
        "Port-Number(455)",
        "Reservation-Priority(458)",
        "Globally-Unique-Address(300)",
        "Address-Realm(301)",
        "ETSI-Service-Class(459)",
        "Media-Component-Description(517)",
        "Flow-Description(507)",
    ):
        assert name in ours, name
