"""Loading the TOML configuration, and its error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostednat.config import ConfigError, PortRange, load

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostednat.toml"
    path.write_text(text)
    return path


def test_example_configuration_loads() -> None:
    """The shipped example is valid and runs the userspace backend."""
    config = load(ROOT / "conf" / "hostednat.toml")
    assert config.nat.backend == "userspace"
    assert config.rtsp.mode == "reverse"
    assert config.routes[0].upstream == "rtsp://127.0.0.1:8555/"
    assert config.nat.access_ports == PortRange(30000, 30999)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[rtsp]\nlisen = []\n", "rtsp.lisen", "unknown key"),
        ("[nat]\naccess_ports = '10-20'\n", "nat.access_ports", "1024-65535"),
        ("[nat]\naccess_address = 'edge'\n", "nat.access_address", "IP"),
        ("[nat]\nbackend = 'dpdk'\n", "nat.backend", "expected one of"),
        ("[rtsp]\nresponse_timeout = -1\n", "rtsp.response_timeout", "positive"),
        ("[rtsp]\nmode = 'reverse'\n", "routes", "at least one route"),
        ("[[routes]]\nprefix = 'x'\nupstream = 'rtsp://a/'\n", "routes[0].prefix", "/"),
        (
            "[[routes]]\nprefix = '/'\nupstream = 'http://a/'\n",
            "routes[0].upstream",
            "rtsp",
        ),
        ("[[routes]]\nprefix = '/'\n", "routes[0].upstream", "required"),
        ("[rtsp]\nmode = 'forward'\n", "forward.allow", "allow-list"),
        ("bogus = 1\n", "bogus", "unknown key"),
        ("[rtsp\n", "(syntax)", ""),
    ],
)
def test_bad_values_name_file_and_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    """Every bad value is reported with the file, the key path and why."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that cannot be read is reported, not raised as OSError."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "absent.toml")
    assert "absent.toml" in str(caught.value)


def test_overlapping_ranges_on_one_address_are_refused(tmp_path: Path) -> None:
    """Access and core ranges may not share ports on the same address."""
    path = write(
        tmp_path,
        "[[routes]]\nprefix='/'\nupstream='rtsp://127.0.0.1/'\n"
        "[nat]\naccess_ports='30000-30100'\ncore_ports='30050-30200'\n",
    )
    with pytest.raises(ConfigError, match=r"nat\.core_ports"):
        load(path)


def test_twistd_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    """``twistd hostednat`` with a bad file stops with the key in its message."""
    path = write(tmp_path, "[nat]\nrelatch_after = 'soon'\n")
    twistd = Path(sys.executable).with_name("twistd")
    if not twistd.exists():
        pytest.skip("twistd is not installed beside this interpreter")
    result = subprocess.run(
        [str(twistd), "-n", "hostednat", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "nat.relatch_after" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
