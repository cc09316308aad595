"""``twistd hostednat-spdf``: the SPDF simulator's options and service."""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from hostednat.config import ConfigError
from hostednat.diameter.simulator.config import load


class Options(usage.Options):
    """Options of ``twistd hostednat-spdf``."""

    synopsis = "--config FILE"
    longdesc = (
        "SPDF (RACS) simulator answering Gq' or Rx requests from hostednat, "
        "with bandwidth budgets, forced result codes and an admin endpoint "
        "that sends RAR or ASR."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", None, "TOML configuration file (see conf/spdf.toml)."],
    ]

    def postOptions(self) -> None:
        if self["config"] is None:
            raise usage.UsageError("--config is required")
        try:
            self["parsed"] = load(self["config"])
        except ConfigError as error:
            raise usage.UsageError(f"configuration error: {error}") from None


def makeService(options: Options) -> IService:
    """Build the service with the global reactor; the only place it is used."""
    from twisted.internet import reactor

    from hostednat.diameter.simulator.service import build_service

    service: Any
    service, _ = build_service(options["parsed"], reactor)
    return service  # type: ignore[no-any-return]
