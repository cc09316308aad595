"""Building and reading the Diameter messages hostednat exchanges.

Base protocol (RFC 6733): CER/CEA (5.3), DWR/DWA (5.5), DPR/DPA (5.4) and
the generic answer, including the E-bit protocol-error form (7.2).

Gq' (ETSI TS 183 017 7.1, grammars in reference 4.2): AAR and STR from the
AF; RAR and ASR from the SPDF and their answers; AAA, STA, RAR and ASR for
the SPDF simulator.  The same builders serve Rx (TS 29.214) with the ETSI
binding AVPs left out and Framed-IP-Address at the top level.

Requests are returned as bytes with zero identifiers: the peer machine
patches the Hop-by-Hop and End-to-End identifiers in when it sends them.

Not supported: Proxy-Info and Route-Record (hostednat is no relay), Class
echoing, and Framed-IPv6-Prefix shorter than 128 bits in bindings.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

import attrs

from hostednat.diameter import codec
from hostednat.diameter.codec import new_avp
from hostednat.diameter.dictionary import (
    VENDOR_3GPP,
    VENDOR_ETSI,
    AvpCode,
    AvpCode3gpp,
    AvpCodeEtsi,
    Command,
    FlowStatus,
    FlowUsage,
    LatchingIndication,
)
from hostednat.diameter.results import DIAMETER_SUCCESS, Result

_REQUEST_PROXIABLE = codec.FLAG_REQUEST | codec.FLAG_PROXIABLE

_UNSPECIFIED = frozenset({"0.0.0.0", "::"})


@attrs.frozen
class Identity:
    """What a Diameter node says about itself (RFC 6733 5.3).

    :param application_id: 16777222 (Gq') or 16777236 (Rx).
    :param vendor_id: the implementer's SMI enterprise number (0 allowed).
    :param origin_state_id: increases at every restart (RFC 6733 8.16).
    """

    origin_host: str
    origin_realm: str
    application_id: int
    product_name: str = "hostednat"
    vendor_id: int = 0
    origin_state_id: int = 0
    supported_vendors: tuple[int, ...] = (VENDOR_3GPP, VENDOR_ETSI)
    application_vendor: int = VENDOR_3GPP


def _origin(identity: Identity) -> list[Any]:
    return [
        new_avp(AvpCode.ORIGIN_HOST, 0, identity.origin_host.encode()),
        new_avp(AvpCode.ORIGIN_REALM, 0, identity.origin_realm.encode()),
    ]


def _application(identity: Identity) -> Any:
    return new_avp(
        AvpCode.VENDOR_SPECIFIC_APPLICATION_ID,
        0,
        [
            new_avp(AvpCode.VENDOR_ID, 0, identity.application_vendor),
            new_avp(AvpCode.AUTH_APPLICATION_ID, 0, identity.application_id),
        ],
    )


def _capabilities(identity: Identity, host_addresses: Sequence[str]) -> list[Any]:
    avps = _origin(identity)
    avps += [new_avp(AvpCode.HOST_IP_ADDRESS, 0, a) for a in host_addresses]
    avps += [
        new_avp(AvpCode.VENDOR_ID, 0, identity.vendor_id),
        new_avp(AvpCode.PRODUCT_NAME, 0, identity.product_name),
        new_avp(AvpCode.ORIGIN_STATE_ID, 0, identity.origin_state_id),
    ]
    avps += [
        new_avp(AvpCode.SUPPORTED_VENDOR_ID, 0, v) for v in identity.supported_vendors
    ]
    avps.append(new_avp(AvpCode.INBAND_SECURITY_ID, 0, 0))
    avps.append(_application(identity))
    return avps


def capabilities_exchange_request(
    identity: Identity, host_addresses: Sequence[str]
) -> bytes:
    """CER (RFC 6733 5.3.1) advertising Vendor-Specific-Application-Id."""
    return codec.encode(
        Command.CAPABILITIES_EXCHANGE,
        codec.FLAG_REQUEST,
        0,
        _capabilities(identity, host_addresses),
    )


def capabilities_exchange_answer(
    request: codec.Header,
    identity: Identity,
    host_addresses: Sequence[str],
    result_code: int = DIAMETER_SUCCESS,
) -> bytes:
    """CEA (RFC 6733 5.3.2) to ``request``."""
    avps = [new_avp(AvpCode.RESULT_CODE, 0, result_code)]
    avps += _capabilities(identity, host_addresses)
    return _answer_bytes(request, avps)


def device_watchdog_request(identity: Identity) -> bytes:
    """DWR (RFC 6733 5.5.1)."""
    avps = _origin(identity)
    avps.append(new_avp(AvpCode.ORIGIN_STATE_ID, 0, identity.origin_state_id))
    return codec.encode(Command.DEVICE_WATCHDOG, codec.FLAG_REQUEST, 0, avps)


def disconnect_peer_request(identity: Identity, cause: int) -> bytes:
    """DPR (RFC 6733 5.4.1) with Disconnect-Cause ``cause``."""
    avps = _origin(identity)
    avps.append(new_avp(AvpCode.DISCONNECT_CAUSE, 0, cause))
    return codec.encode(Command.DISCONNECT_PEER, codec.FLAG_REQUEST, 0, avps)


def answer(
    request: codec.Header,
    identity: Identity,
    result_code: int = DIAMETER_SUCCESS,
    session_id: str | None = None,
    extra: Sequence[Any] = (),
    error_message: str | None = None,
) -> bytes:
    """A generic answer to ``request``: DWA, DPA, RAA, ASA, STA, errors.

    A 3xxx ``result_code`` sets the E bit (RFC 6733 7.1.3).
    """
    avps: list[Any] = []
    if session_id is not None:
        avps.append(new_avp(AvpCode.SESSION_ID, 0, session_id, cache=False))
    avps.append(new_avp(AvpCode.RESULT_CODE, 0, result_code))
    avps += _origin(identity)
    if request.command_code == Command.DEVICE_WATCHDOG:
        avps.append(new_avp(AvpCode.ORIGIN_STATE_ID, 0, identity.origin_state_id))
    if error_message:
        avps.append(new_avp(AvpCode.ERROR_MESSAGE, 0, error_message))
    avps += extra
    return _answer_bytes(request, avps, error=3000 <= result_code < 4000)


def _answer_bytes(
    request: codec.Header, avps: Sequence[Any], error: bool = False
) -> bytes:
    flags = request.flags & codec.FLAG_PROXIABLE
    if error:
        flags |= codec.FLAG_ERROR
    return codec.encode(
        request.command_code,
        flags,
        request.application_id,
        avps,
        request.hop_by_hop_id,
        request.end_to_end_id,
    )


def result_of(avps: Sequence[Any]) -> Result | None:
    """Result-Code, or Experimental-Result (RFC 6733 7.6), of an answer."""
    code = codec.value_of(avps, AvpCode.RESULT_CODE)
    if code is not None:
        return Result(0, int(code))
    experimental = codec.find(avps, AvpCode.EXPERIMENTAL_RESULT)
    if experimental is None:
        return None
    members = codec.children(experimental)
    vendor = codec.value_of(members, AvpCode.VENDOR_ID)
    code = codec.value_of(members, AvpCode.EXPERIMENTAL_RESULT_CODE)
    if code is None:
        return None
    return Result(int(vendor or 0), int(code))


def experimental_result(result: Result) -> Any:
    """The AVP carrying ``result``: Result-Code for vendor 0."""
    if result.vendor_id == 0:
        return new_avp(AvpCode.RESULT_CODE, 0, result.code)
    return new_avp(
        AvpCode.EXPERIMENTAL_RESULT,
        0,
        [
            new_avp(AvpCode.VENDOR_ID, 0, result.vendor_id),
            new_avp(AvpCode.EXPERIMENTAL_RESULT_CODE, 0, result.code),
        ],
    )


def supports_application(avps: Sequence[Any], application_id: int) -> bool:
    """Whether a CER or CEA advertises ``application_id`` (or relay)."""
    wanted = {application_id, 0xFFFFFFFF}
    for avp in codec.find_all(avps, AvpCode.AUTH_APPLICATION_ID):
        if avp.value in wanted:
            return True
    for group in codec.find_all(avps, AvpCode.VENDOR_SPECIFIC_APPLICATION_ID):
        members = codec.children(group)
        if codec.value_of(members, AvpCode.AUTH_APPLICATION_ID) in wanted:
            return True
    return False


# -- Gq' -------------------------------------------------------------------


@attrs.frozen
class TransportAddress:
    """One V4- or V6-Transport-Address element (TS 183 017 7.3.4, 7.3.5).

    ``0.0.0.0`` (or ``::``) with port 0 is the wildcard (reference D3).
    """

    host: str
    port: int

    @property
    def is_wildcard(self) -> bool:
        return self.port == 0 and ipaddress.ip_address(self.host).is_unspecified

    @classmethod
    def wildcard(cls, like: str = "0.0.0.0") -> TransportAddress:
        """The wildcard of the family of ``like`` (IPv6 when it has a colon)."""
        return cls("::" if ":" in like else "0.0.0.0", 0)


@attrs.frozen
class MediaSubComponent:
    """A Media-Sub-Component (TS 29.209 6.5.7): one RTP or RTCP flow."""

    flow_number: int
    flow_usage: FlowUsage | None = None
    flow_descriptions: tuple[str, ...] = ()


@attrs.frozen
class MediaComponent:
    """A Media-Component-Description (TS 29.209 6.5.6, TS 183 017 7.3.26)."""

    number: int
    sub_components: tuple[MediaSubComponent, ...] = ()
    media_type: int | None = None
    bandwidth_ul: int | None = None
    bandwidth_dl: int | None = None
    flow_status: FlowStatus | None = None
    rr_bandwidth: int | None = None
    rs_bandwidth: int | None = None
    af_application_identifier: bytes | None = None


@attrs.frozen
class AaRequest:
    """The content of one AAR (TS 183 017 7.1.1), initial or update.

    :param subscriber: the CNG public address for Globally-Unique-Address
        (Gq') or Framed-IP-Address (Rx).
    :param binding_input: pairs of access and core elements (reference 4.7),
        empty for an update without binding.
    """

    session_id: str
    components: tuple[MediaComponent, ...]
    subscriber: str | None = None
    address_realm: bytes | None = None
    binding_input: tuple[TransportAddress, ...] = ()
    binding_output: tuple[TransportAddress, ...] = ()
    latching: LatchingIndication | None = None
    specific_actions: tuple[int, ...] = ()
    af_charging_identifier: bytes | None = None
    service_class: str | None = None
    reservation_priority: int | None = None
    authorization_package_ids: tuple[str, ...] = ()
    user_name: str | None = None


def _sub_component(sub: MediaSubComponent) -> Any:
    avps = [new_avp(AvpCode3gpp.FLOW_NUMBER, VENDOR_3GPP, sub.flow_number)]
    avps += [
        new_avp(AvpCode3gpp.FLOW_DESCRIPTION, VENDOR_3GPP, d.encode())
        for d in sub.flow_descriptions
    ]
    if sub.flow_usage is not None:
        avps.append(new_avp(AvpCode3gpp.FLOW_USAGE, VENDOR_3GPP, sub.flow_usage))
    return new_avp(AvpCode3gpp.MEDIA_SUB_COMPONENT, VENDOR_3GPP, avps)


def _component(component: MediaComponent) -> Any:
    key = (AvpCode3gpp.MEDIA_COMPONENT_DESCRIPTION, component)
    return codec.shared_avp(key, lambda: _build_component(component))


def _build_component(component: MediaComponent) -> Any:
    avps = [new_avp(AvpCode3gpp.MEDIA_COMPONENT_NUMBER, VENDOR_3GPP, component.number)]
    avps += [_sub_component(s) for s in component.sub_components]
    optional = (
        (AvpCode3gpp.AF_APPLICATION_IDENTIFIER, component.af_application_identifier),
        (AvpCode3gpp.MEDIA_TYPE, _enumerated(component.media_type)),
        (AvpCode3gpp.MAX_REQUESTED_BANDWIDTH_UL, component.bandwidth_ul),
        (AvpCode3gpp.MAX_REQUESTED_BANDWIDTH_DL, component.bandwidth_dl),
        (AvpCode3gpp.FLOW_STATUS, component.flow_status),
        (AvpCode3gpp.RS_BANDWIDTH, component.rs_bandwidth),
        (AvpCode3gpp.RR_BANDWIDTH, component.rr_bandwidth),
    )
    avps += [new_avp(code, VENDOR_3GPP, v) for code, v in optional if v is not None]
    return new_avp(AvpCode3gpp.MEDIA_COMPONENT_DESCRIPTION, VENDOR_3GPP, avps)


def _enumerated(value: int | None) -> int | None:
    # Enumerated is Integer32 on the wire: OTHER (0xFFFFFFFF) travels as -1.
    if value is not None and value > 0x7FFFFFFF:
        return value - (1 << 32)
    return value


def _address_avp(host: str) -> Any:
    if ":" not in host:
        return new_avp(AvpCode.FRAMED_IP_ADDRESS, 0, codec.ip_octets(host))
    return new_avp(AvpCode.FRAMED_IPV6_PREFIX, 0, codec.ipv6_prefix_octets(host))


def _transport_address(address: TransportAddress) -> Any:
    code = AvpCodeEtsi.V4_TRANSPORT_ADDRESS
    if ":" in address.host:
        code = AvpCodeEtsi.V6_TRANSPORT_ADDRESS

    def build() -> Any:
        members = [
            _address_avp(address.host),
            new_avp(AvpCodeEtsi.PORT_NUMBER, VENDOR_ETSI, address.port),
        ]
        return new_avp(code, VENDOR_ETSI, members)

    # The wildcard core element is in every initial AAR; a box's own
    # address and port seldom come twice, and would only crowd the cache.
    if address.port == 0 and address.host in _UNSPECIFIED:
        return codec.shared_avp((code, address), build)
    return build()


def _address_list(code: int, addresses: Sequence[TransportAddress]) -> Any:
    return new_avp(code, VENDOR_ETSI, [_transport_address(a) for a in addresses])


def binding_information(
    binding_input: Sequence[TransportAddress],
    binding_output: Sequence[TransportAddress] = (),
) -> Any:
    """Binding-Information (TS 183 017 7.3.1)."""
    avps = [_address_list(AvpCodeEtsi.BINDING_INPUT_LIST, binding_input)]
    if binding_output:
        avps.append(_address_list(AvpCodeEtsi.BINDING_OUTPUT_LIST, binding_output))
    return new_avp(AvpCodeEtsi.BINDING_INFORMATION, VENDOR_ETSI, avps)


def _routing(
    identity: Identity, session_id: str, realm: str, host: str | None
) -> list[Any]:
    avps = [new_avp(AvpCode.SESSION_ID, 0, session_id, cache=False)]
    avps += _routing_tail(identity, realm, host)
    return avps


# The same few identities and destinations serve every request: their AVPs
# are built once (shared, like new_avp's leaves; never modified).
@functools.lru_cache(maxsize=64)
def _routing_tail(identity: Identity, realm: str, host: str | None) -> tuple[Any, ...]:
    avps = [new_avp(AvpCode.AUTH_APPLICATION_ID, 0, identity.application_id)]
    avps += _origin(identity)
    avps.append(new_avp(AvpCode.DESTINATION_REALM, 0, realm.encode()))
    if host is not None:
        avps.append(new_avp(AvpCode.DESTINATION_HOST, 0, host.encode()))
    return tuple(avps)


@functools.lru_cache(maxsize=64)
def _specific_actions(actions: tuple[int, ...]) -> tuple[Any, ...]:
    return tuple(
        new_avp(AvpCode3gpp.SPECIFIC_ACTION, VENDOR_3GPP, action) for action in actions
    )


def aa_request(
    request: AaRequest,
    identity: Identity,
    destination_realm: str,
    destination_host: str | None = None,
) -> bytes:
    """AAR (TS 183 017 7.1.1 for Gq', TS 29.214 5.6.1 for Rx)."""
    etsi = identity.application_id != 16777236
    avps = _routing(identity, request.session_id, destination_realm, destination_host)
    avps += [_component(c) for c in request.components]
    if request.af_charging_identifier is not None:
        avps.append(
            new_avp(
                AvpCode3gpp.AF_CHARGING_IDENTIFIER,
                VENDOR_3GPP,
                request.af_charging_identifier,
                cache=False,
            )
        )
    avps += _specific_actions(tuple(request.specific_actions))
    if request.user_name is not None:
        avps.append(new_avp(AvpCode.USER_NAME, 0, request.user_name))
    if etsi:
        avps += _etsi_avps(request)
    elif request.subscriber is not None:
        avps.append(_address_avp(request.subscriber))
    return codec.encode(Command.AA, _REQUEST_PROXIABLE, identity.application_id, avps)


def _etsi_avps(request: AaRequest) -> list[Any]:
    avps: list[Any] = []
    if request.binding_input:
        avps.append(binding_information(request.binding_input))
    if request.latching is not None:
        avps.append(
            new_avp(AvpCodeEtsi.LATCHING_INDICATION, VENDOR_ETSI, request.latching)
        )
    if request.reservation_priority is not None:
        avps.append(
            new_avp(
                AvpCodeEtsi.RESERVATION_PRIORITY,
                VENDOR_ETSI,
                request.reservation_priority,
            )
        )
    if request.subscriber is not None:
        avps.append(_unique_address(request.subscriber, request.address_realm))
    if request.service_class is not None:
        avps.append(
            new_avp(AvpCodeEtsi.SERVICE_CLASS, VENDOR_ETSI, request.service_class)
        )
    avps += [
        new_avp(AvpCodeEtsi.AUTHORIZATION_PACKAGE_ID, VENDOR_ETSI, p)
        for p in request.authorization_package_ids
    ]
    return avps


def _unique_address(subscriber: str, realm: bytes | None) -> Any:
    members = [_address_avp(subscriber)]
    if realm is not None:
        members.append(new_avp(AvpCodeEtsi.ADDRESS_REALM, VENDOR_ETSI, realm))
    return new_avp(AvpCodeEtsi.GLOBALLY_UNIQUE_ADDRESS, VENDOR_ETSI, members)


def session_termination_request(
    identity: Identity,
    session_id: str,
    termination_cause: int,
    destination_realm: str,
    destination_host: str | None = None,
) -> bytes:
    """STR (TS 183 017 7.1.5)."""
    avps = _routing(identity, session_id, destination_realm, destination_host)
    avps.append(new_avp(AvpCode.TERMINATION_CAUSE, 0, termination_cause))
    return codec.encode(
        Command.SESSION_TERMINATION,
        _REQUEST_PROXIABLE,
        identity.application_id,
        avps,
    )


def re_auth_request(
    identity: Identity,
    session_id: str,
    destination_realm: str,
    destination_host: str,
    specific_actions: Sequence[int] = (),
    abort_cause: int | None = None,
) -> bytes:
    """RAR (TS 183 017 7.1.3), sent by the SPDF simulator."""
    avps = _routing(identity, session_id, destination_realm, destination_host)
    avps += [
        new_avp(AvpCode3gpp.SPECIFIC_ACTION, VENDOR_3GPP, a) for a in specific_actions
    ]
    if abort_cause is not None:
        avps.append(new_avp(AvpCode3gpp.ABORT_CAUSE, VENDOR_3GPP, abort_cause))
    return codec.encode(
        Command.RE_AUTH, _REQUEST_PROXIABLE, identity.application_id, avps
    )


def abort_session_request(
    identity: Identity,
    session_id: str,
    destination_realm: str,
    destination_host: str,
    abort_cause: int,
) -> bytes:
    """ASR (TS 183 017 7.1.7), sent by the SPDF simulator."""
    avps = _routing(identity, session_id, destination_realm, destination_host)
    avps.append(new_avp(AvpCode3gpp.ABORT_CAUSE, VENDOR_3GPP, abort_cause))
    return codec.encode(
        Command.ABORT_SESSION, _REQUEST_PROXIABLE, identity.application_id, avps
    )


def aa_answer(
    request: codec.Header,
    identity: Identity,
    session_id: str,
    result: Result,
    binding_input: Sequence[TransportAddress] = (),
    binding_output: Sequence[TransportAddress] = (),
) -> bytes:
    """AAA (TS 183 017 7.1.2), sent by the SPDF simulator."""
    avps = [
        new_avp(AvpCode.SESSION_ID, 0, session_id, cache=False),
        new_avp(AvpCode.AUTH_APPLICATION_ID, 0, identity.application_id),
    ]
    avps += _origin(identity)
    avps.append(experimental_result(result))
    if binding_output:
        avps.append(binding_information(binding_input, binding_output))
    return _answer_bytes(request, avps, error=3000 <= result.code < 4000)


# -- reading ---------------------------------------------------------------


def _transport_addresses(list_avp: Any) -> tuple[TransportAddress, ...]:
    found: list[TransportAddress] = []
    for element in codec.children(list_avp):
        if element.vendor_id != VENDOR_ETSI or element.code not in (
            AvpCodeEtsi.V4_TRANSPORT_ADDRESS,
            AvpCodeEtsi.V6_TRANSPORT_ADDRESS,
        ):
            continue
        members = codec.children(element)
        raw = codec.value_of(members, AvpCode.FRAMED_IP_ADDRESS)
        if raw is None:
            raw = codec.value_of(members, AvpCode.FRAMED_IPV6_PREFIX)
        port = codec.value_of(members, AvpCodeEtsi.PORT_NUMBER, VENDOR_ETSI)
        if raw is None or port is None:
            raise ValueError("transport address without address or port")
        found.append(TransportAddress(codec.ip_from_octets(raw), int(port)))
    return tuple(found)


def binding_lists(
    avps: Sequence[Any],
) -> tuple[tuple[TransportAddress, ...], tuple[TransportAddress, ...]]:
    """Binding-Input-List and Binding-Output-List of a message, or empty.

    :raises ValueError: malformed transport addresses.
    """
    info = codec.find(avps, AvpCodeEtsi.BINDING_INFORMATION, VENDOR_ETSI)
    if info is None:
        return (), ()
    members = codec.children(info)
    lists = []
    for code in (AvpCodeEtsi.BINDING_INPUT_LIST, AvpCodeEtsi.BINDING_OUTPUT_LIST):
        found = codec.find(members, code, VENDOR_ETSI)
        lists.append(() if found is None else _transport_addresses(found))
    return lists[0], lists[1]


def _int(avps: Sequence[Any], code: int) -> int | None:
    value = codec.value_of(avps, code, VENDOR_3GPP)
    return None if value is None else int(value)


def requested_downlink(avps: Sequence[Any]) -> dict[int, int]:
    """Max-Requested-Bandwidth-DL by Media-Component-Number, of an AAR.

    Reads only those two members of each Media-Component-Description, for
    an SPDF's budget check; components without a downlink figure are left
    out.
    """
    requested: dict[int, int] = {}
    for group in codec.find_all(
        avps, AvpCode3gpp.MEDIA_COMPONENT_DESCRIPTION, VENDOR_3GPP
    ):
        members = codec.children(group)
        downlink = _int(members, AvpCode3gpp.MAX_REQUESTED_BANDWIDTH_DL)
        if downlink is not None:
            number = _int(members, AvpCode3gpp.MEDIA_COMPONENT_NUMBER) or 0
            requested[number] = downlink
    return requested


def subscriber_address(avps: Sequence[Any]) -> str | None:
    """Globally-Unique-Address's (or Rx's top-level) Framed-IP-Address."""
    unique = codec.find(avps, AvpCodeEtsi.GLOBALLY_UNIQUE_ADDRESS, VENDOR_ETSI)
    scope = codec.children(unique) if unique is not None else avps
    raw = codec.value_of(scope, AvpCode.FRAMED_IP_ADDRESS)
    if raw is None:
        raw = codec.value_of(scope, AvpCode.FRAMED_IPV6_PREFIX)
    return None if raw is None else codec.ip_from_octets(raw)


def session_id_of(avps: Sequence[Any]) -> str | None:
    """The Session-Id of a message, if any."""
    value = codec.value_of(avps, AvpCode.SESSION_ID)
    return None if value is None else str(value)


def specific_actions(avps: Sequence[Any]) -> tuple[int, ...]:
    """Specific-Action values of a RAR or AAR."""
    return tuple(
        int(a.value)
        for a in codec.find_all(avps, AvpCode3gpp.SPECIFIC_ACTION, VENDOR_3GPP)
    )


def abort_cause(avps: Sequence[Any]) -> int | None:
    """Abort-Cause of an ASR or RAR."""
    return _int(avps, AvpCode3gpp.ABORT_CAUSE)


def origin_host(avps: Sequence[Any]) -> str | None:
    """Origin-Host as text."""
    value = codec.value_of(avps, AvpCode.ORIGIN_HOST)
    return None if value is None else bytes(value).decode(errors="replace")


def origin_realm(avps: Sequence[Any]) -> str | None:
    """Origin-Realm as text."""
    value = codec.value_of(avps, AvpCode.ORIGIN_REALM)
    return None if value is None else bytes(value).decode(errors="replace")


class SessionIdFactory:
    """Session-Id values ``<host>;<high>;<low>`` (RFC 6733 8.8).

    ``high`` is the boot time (seconds, 32 bits) and ``low`` a counter, so
    identifiers stay unique across restarts.
    """

    def __init__(self, origin_host: str, boot_time: float) -> None:
        self._prefix = f"{origin_host};{int(boot_time) & 0xFFFFFFFF}"
        self._counter = 0

    def next(self, suffix: str | None = None) -> str:
        """A fresh Session-Id, with an optional ``;suffix``."""
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        session_id = f"{self._prefix};{self._counter}"
        return session_id if suffix is None else f"{session_id};{suffix}"
