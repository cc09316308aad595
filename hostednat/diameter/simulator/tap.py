"""``twistd hostednat-spdf``: the SPDF simulator's options and service."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService

from hostednat.diameter.simulator.config import load
from hostednat.tap import ConfigFileOptions


class Options(ConfigFileOptions):
    """Options of ``twistd hostednat-spdf``."""

    longdesc = (
        "SPDF (RACS) simulator answering Gq' or Rx requests from hostednat, "
        "with bandwidth budgets, forced result codes and an admin endpoint "
        "that sends RAR or ASR."
    )

    @staticmethod
    def loader(path: str) -> Any:
        """Read and check the simulator's file at ``path``."""
        return load(path)


def makeService(options: Options) -> IService:
    """Build the service with the global reactor; the only place it is used."""
    from twisted.internet import reactor

    from hostednat.diameter.simulator.service import build_service

    service: Any
    service, _ = build_service(options["parsed"], reactor)
    return service  # type: ignore[no-any-return]
