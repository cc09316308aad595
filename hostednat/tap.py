"""``twistd hostednat``: command-line options and the service maker."""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from hostednat.config import Config, ConfigError, load


class ConfigFileOptions(usage.Options):
    """Options of a twistd plugin configured by one TOML file.

    The file is read and checked while the options are parsed, so that a bad
    file stops twistd with a usage error naming the key, before anything
    listens.  Subclasses name their loader.
    """

    synopsis = "--config FILE"
    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", None, "TOML configuration file (examples in conf/)."],
    ]

    @staticmethod
    def loader(path: str) -> Any:
        """Read and check the file at ``path``; raise ConfigError if unusable."""
        return load(path)

    def postOptions(self) -> None:
        if self["config"] is None:
            raise usage.UsageError("--config is required")
        try:
            self["parsed"] = self.loader(self["config"])
        except ConfigError as error:
            raise usage.UsageError(f"configuration error: {error}") from None


class Options(ConfigFileOptions):
    """Options of ``twistd hostednat``."""

    longdesc = (
        "Hosted-NAT RTSP proxy: relays RTSP between set-top boxes behind a NAPT "
        "gateway and media servers, and carries UDP media across the NAT."
    )


def makeService(options: Options) -> IService:
    """Build the service with the global reactor; the only place it is used.

    :raises SystemExit: the configuration cannot run here (for example the
        kernel backend without CAP_NET_ADMIN), with the reason.
    """
    from twisted.internet import reactor

    from hostednat.proxy.service import build_service

    config: Config = options["parsed"]
    try:
        service: Any = build_service(config, reactor)
    except ConfigError as error:
        # Options are parsed by now: end like a bad file would, one line
        # naming the key and the reason, exit status 1, no traceback.
        raise SystemExit(f"configuration error: {error}") from None
    return service  # type: ignore[no-any-return]
