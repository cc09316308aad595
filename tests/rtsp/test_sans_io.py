"""The codec stays sans-IO: importing it must not load Twisted."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import hostednat.rtsp


def test_no_rtsp_module_imports_twisted() -> None:
    """Importing every hostednat.rtsp module leaves twisted unloaded."""
    modules = [
        f"hostednat.rtsp.{info.name}"
        for info in pkgutil.iter_modules(hostednat.rtsp.__path__)
    ]
    assert "hostednat.rtsp.parser" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'twisted']\n"
        "print(','.join(loaded))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == ""
