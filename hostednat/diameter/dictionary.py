"""AVP codes, vendors and applications used on Gq' and Rx.

python-diameter already carries the base (RFC 6733), NASREQ, 3GPP (vendor
10415) and ETSI (vendor 13019) dictionaries.  This module names the codes
hostednat uses and corrects or completes the ETSI entries through the
library's public ``register`` function (no fork):

- 457 is Latching-Indication (ETSI TS 183 017 7.3.8); the library copies
  Wireshark's placeholder name ``Requested-Information-457``;
- 459 is Service-Class (7.3.33), 460 Overbooking-Indicator (7.3.35) and 461
  Authorization-Package-Id (7.3.37), which the library lacks or misnames;
- 450 is spelled Binding-Information;
- the binding AVPs 450-461 are sent with M clear (reference decision D9, as
  in the corsac stack), 300/301 with M set.

Calling :func:`install` more than once is harmless; importing
:mod:`hostednat.diameter.messages` installs the dictionary.
"""

from __future__ import annotations

import enum
from typing import Final

from diameter.message.avp import (
    AvpEnumerated,
    AvpGrouped,
    AvpOctetString,
    AvpUnsigned32,
    AvpUtf8String,
)
from diameter.message.avp.avp import register

VENDOR_NONE: Final = 0
VENDOR_3GPP: Final = 10415
VENDOR_ETSI: Final = 13019

# ETSI TS 183 017 uses the 3GPP Gq application id; Rx is 3GPP TS 29.214.
APPLICATION_GQ: Final = 16777222
APPLICATION_RX: Final = 16777236
APPLICATION_RELAY: Final = 0xFFFFFFFF


class Command(enum.IntEnum):
    """Diameter command codes (RFC 6733 3.1, TS 183 017 7.1)."""

    CAPABILITIES_EXCHANGE = 257
    RE_AUTH = 258
    AA = 265
    ABORT_SESSION = 274
    SESSION_TERMINATION = 275
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282


class AvpCode(enum.IntEnum):
    """AVP codes of the base protocol and NASREQ (vendor 0)."""

    USER_NAME = 1
    FRAMED_IP_ADDRESS = 8
    CLASS = 25
    FRAMED_IPV6_PREFIX = 97
    HOST_IP_ADDRESS = 257
    AUTH_APPLICATION_ID = 258
    ACCT_APPLICATION_ID = 259
    VENDOR_SPECIFIC_APPLICATION_ID = 260
    SESSION_ID = 263
    ORIGIN_HOST = 264
    SUPPORTED_VENDOR_ID = 265
    VENDOR_ID = 266
    FIRMWARE_REVISION = 267
    RESULT_CODE = 268
    PRODUCT_NAME = 269
    DISCONNECT_CAUSE = 273
    ORIGIN_STATE_ID = 278
    FAILED_AVP = 279
    ERROR_MESSAGE = 281
    DESTINATION_REALM = 283
    DESTINATION_HOST = 293
    TERMINATION_CAUSE = 295
    ORIGIN_REALM = 296
    EXPERIMENTAL_RESULT = 297
    EXPERIMENTAL_RESULT_CODE = 298
    INBAND_SECURITY_ID = 299


class AvpCode3gpp(enum.IntEnum):
    """3GPP AVP codes (vendor 10415) reused by Gq' (TS 29.209, 29.214)."""

    ABORT_CAUSE = 500
    AF_APPLICATION_IDENTIFIER = 504
    AF_CHARGING_IDENTIFIER = 505
    FLOW_DESCRIPTION = 507
    FLOW_NUMBER = 509
    FLOW_STATUS = 511
    FLOW_USAGE = 512
    SPECIFIC_ACTION = 513
    MAX_REQUESTED_BANDWIDTH_DL = 515
    MAX_REQUESTED_BANDWIDTH_UL = 516
    MEDIA_COMPONENT_DESCRIPTION = 517
    MEDIA_COMPONENT_NUMBER = 518
    MEDIA_SUB_COMPONENT = 519
    MEDIA_TYPE = 520
    RR_BANDWIDTH = 521
    RS_BANDWIDTH = 522


class AvpCodeEtsi(enum.IntEnum):
    """ETSI AVP codes (vendor 13019) of TS 183 017 and ES 283 034."""

    GLOBALLY_UNIQUE_ADDRESS = 300
    ADDRESS_REALM = 301
    LOGICAL_ACCESS_ID = 302
    BINDING_INFORMATION = 450
    BINDING_INPUT_LIST = 451
    BINDING_OUTPUT_LIST = 452
    V6_TRANSPORT_ADDRESS = 453
    V4_TRANSPORT_ADDRESS = 454
    PORT_NUMBER = 455
    RESERVATION_CLASS = 456
    LATCHING_INDICATION = 457
    RESERVATION_PRIORITY = 458
    SERVICE_CLASS = 459
    OVERBOOKING_INDICATOR = 460
    AUTHORIZATION_PACKAGE_ID = 461


class MediaType(enum.IntEnum):
    """Media-Type values (TS 29.209 6.5.8)."""

    AUDIO = 0
    VIDEO = 1
    DATA = 2
    APPLICATION = 3
    CONTROL = 4
    TEXT = 5
    MESSAGE = 6
    OTHER = 0xFFFFFFFF


class FlowStatus(enum.IntEnum):
    """Flow-Status values (TS 29.209 6.5.4)."""

    ENABLED_UPLINK = 0
    ENABLED_DOWNLINK = 1
    ENABLED = 2
    DISABLED = 3
    REMOVED = 4


class FlowUsage(enum.IntEnum):
    """Flow-Usage values (TS 29.209 6.5.5)."""

    NO_INFORMATION = 0
    RTCP = 1


class LatchingIndication(enum.IntEnum):
    """Latching-Indication values (TS 183 017 7.3.8)."""

    LATCH = 0
    RELATCH = 1


class SpecificAction(enum.IntEnum):
    """Specific-Action values as Gq' defines them (reference 4.10).

    Rx (TS 29.214) gives 6 and 7 other meanings; a Gq' peer's values are
    never read with an Rx dictionary.
    """

    INDICATION_OF_LOSS_OF_BEARER = 2
    INDICATION_OF_RECOVERY_OF_BEARER = 3
    INDICATION_OF_RELEASE_OF_BEARER = 4
    INDICATION_OF_SUBSCRIBER_DETACHMENT = 6
    INDICATION_OF_RESERVATION_EXPIRATION = 7


class TerminationCause(enum.IntEnum):
    """Termination-Cause values (RFC 6733 8.15)."""

    LOGOUT = 1
    SERVICE_NOT_PROVIDED = 2
    BAD_ANSWER = 3
    ADMINISTRATIVE = 4
    LINK_BROKEN = 5
    AUTH_EXPIRED = 6
    USER_MOVED = 7
    SESSION_TIMEOUT = 8


class DisconnectCause(enum.IntEnum):
    """Disconnect-Cause values (RFC 6733 5.4.3)."""

    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2


# (code, name, type, mandatory): the entries registered on top of the
# library's ETSI dictionary.  Names follow TS 183 017.
_ETSI_ENTRIES: Final = (
    (AvpCodeEtsi.GLOBALLY_UNIQUE_ADDRESS, "Globally-Unique-Address", AvpGrouped, True),
    (AvpCodeEtsi.ADDRESS_REALM, "Address-Realm", AvpOctetString, True),
    (AvpCodeEtsi.BINDING_INFORMATION, "Binding-Information", AvpGrouped, False),
    (AvpCodeEtsi.BINDING_INPUT_LIST, "Binding-Input-List", AvpGrouped, False),
    (AvpCodeEtsi.BINDING_OUTPUT_LIST, "Binding-Output-List", AvpGrouped, False),
    (AvpCodeEtsi.V6_TRANSPORT_ADDRESS, "V6-Transport-Address", AvpGrouped, False),
    (AvpCodeEtsi.V4_TRANSPORT_ADDRESS, "V4-Transport-Address", AvpGrouped, False),
    (AvpCodeEtsi.PORT_NUMBER, "Port-Number", AvpUnsigned32, False),
    (AvpCodeEtsi.RESERVATION_CLASS, "Reservation-Class", AvpUnsigned32, False),
    (AvpCodeEtsi.LATCHING_INDICATION, "Latching-Indication", AvpEnumerated, False),
    (AvpCodeEtsi.RESERVATION_PRIORITY, "Reservation-Priority", AvpEnumerated, False),
    (AvpCodeEtsi.SERVICE_CLASS, "Service-Class", AvpUtf8String, False),
    (AvpCodeEtsi.OVERBOOKING_INDICATOR, "Overbooking-Indicator", AvpEnumerated, False),
    (
        AvpCodeEtsi.AUTHORIZATION_PACKAGE_ID,
        "Authorization-Package-Id",
        AvpUtf8String,
        False,
    ),
)


def install() -> None:
    """Register hostednat's ETSI entries in python-diameter's dictionary."""
    for code, name, type_class, mandatory in _ETSI_ENTRIES:
        register(
            avp=int(code),
            name=name,
            type_cls=type_class,
            vendor=VENDOR_ETSI,
            mandatory=mandatory,
        )
