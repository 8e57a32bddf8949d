"""GBCS use cases: a declarative table, and the ECS17b (Read Import Energy Registers) messages.

ECS17b is a DLMS action on the Data Protection object (class 30, 0-0:43.2.8.255, method 1,
``get_protected_attributes``) asking for the protected import register object
(class 1, 0-0:94.44.34.10, attribute 2). The device answers with the protection parameters
(titles swapped) and the register value encrypted per PROTOCOL.md, "Encrypted content".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.crypto import (
    content_context,
    decrypt_content,
    encrypt_content,
    seal,
    sign_frame,
    verify_mac,
)
from dccsim.gbcs.dlms import (
    AccessKind,
    AccessRequest,
    AccessResponse,
    Data,
    RequestSpec,
    ResponseSpec,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
)


class PayloadKind(Enum):
    """How a use case's payload is encoded (its first byte in the vectors)."""

    DLMS = "dlms"  # Access Request D9 / Access Response DA / Data Notification 0F
    ZIGBEE = "zigbee"  # ZCL commands, first byte 01/02/04/05
    ASN1 = "asn1"  # DER, first byte 30


@dataclass(frozen=True)
class UseCase:
    """One GBCS use case: its message code, the CRA flag of its request, payload kind, SRVs."""

    name: str
    title: str
    message_code: int
    cra_flag: int
    payload_kind: PayloadKind
    service_reference_variants: tuple[str, ...]
    critical: bool = False
    encrypted_response: bool = False


USE_CASES: tuple[UseCase, ...] = (
    # CCS01/CCS02 are DLMS (class 104 ZigBee network control), sent by the ACB itself
    UseCase(
        "CCS01", "Add Device to CHF device log", 0x0001, CRA_COMMAND, PayloadKind.DLMS, ("8.11",)
    ),
    UseCase(
        "CCS02",
        "Remove Device from CHF device log",
        0x0002,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("8.11",),
    ),
    UseCase(
        "ECS17b",
        "Read ESME Energy Registers (Import Energy)",
        0x0027,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("4.1.1",),
        encrypted_response=True,
    ),
    UseCase(
        "ECS42",
        "Remotely close the load switch",
        0x004F,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("7.1",),
        critical=True,
    ),
    UseCase(
        "ECS43",
        "Remotely open the load switch",
        0x0050,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("7.2",),
        critical=True,
    ),
    UseCase(
        "ECS44",
        "Arm load switch",
        0x0051,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("7.3",),
        critical=True,
    ),
    UseCase(
        "ECS45",
        "Read Status of Load Switch in the ESME",
        0x0052,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("7.4",),
    ),
    UseCase(
        "ECS70",
        "Set clock on ESME",
        0x0062,
        CRA_COMMAND,
        PayloadKind.DLMS,
        ("6.11", "8.1.1"),
        critical=True,
    ),
)


def _uc(
    name: str,
    title: str,
    code: int,
    kind: PayloadKind,
    srvs: tuple[str, ...],
    *,
    critical: bool = False,
    encrypted_response: bool = False,
) -> UseCase:
    return UseCase(name, title, code, CRA_COMMAND, kind, srvs, critical, encrypted_response)


_D, _Z, _A = PayloadKind.DLMS, PayloadKind.ZIGBEE, PayloadKind.ASN1
# More use cases of the SRVs, message codes as the RTDS vectors carry them
USE_CASES += (
    _uc("CS01a", "Apply Prepayment Top Up to an ESME", 0x0007, _D, ("2.2",)),
    _uc("CS01b", "Apply Prepayment Top Up to a GSME", 0x0097, _Z, ("2.2",)),
    _uc("ECS01a", "Set Tariff and Price on ESME", 0x0019, _D, ("1.1.1",), critical=True),
    _uc("ECS24", "Read ESME Tariff Data", 0x003A, _D, ("4.11.1",)),
    _uc("ECS02", "Set ESME Payment Mode to Credit", 0x001A, _D, ("1.6",), critical=True),
    _uc("ECS03", "Set ESME Payment Mode to Prepayment", 0x001B, _D, ("1.6",), critical=True),
    _uc("GCS02", "Set GSME Payment Mode to Credit", 0x006C, _Z, ("1.6",), critical=True),
    _uc("GCS03", "Set GSME Payment Mode to Prepayment", 0x006D, _Z, ("1.6",), critical=True),
    _uc(
        "ECS26j",
        "Read ESME Configuration Data Device Information (Payment Mode)",
        0x00BE,
        _D,
        ("6.2.9",),
    ),
    _uc("ECS14", "Disable Privacy PIN Protection", 0x0023, _D, ("3.5",)),
    _uc("ECS15a", "Clear ESME Event Log", 0x0024, _D, ("3.3",)),
    _uc("ECS17c", "Read ESME Energy Registers (Power)", 0x0028, _D, ("4.16",)),
    _uc("ECS39a", "Set MPAN Value on the ESME", 0x004C, _D, ("6.20.1",)),
    _uc("ECS34", "Set Instantaneous Power Threshold Configuration", 0x0047, _D, ("6.12",)),
    _uc("ECS10", "Send Message to ESME", 0x0021, _D, ("3.1",)),
    _uc("GCS07", "Send Message to GSME", 0x0071, _Z, ("3.1",)),
    _uc("GCS13a", "Read GSME Consumption Register", 0x0074, _Z, ("4.1.1",)),
    _uc("GCS13c", "Read GSME Consumption Register (TOU)", 0x00B6, _Z, ("4.1.2",)),
    _uc("GCS60a", "Read Meter Balance for GSME", 0x012A, _Z, ("4.18",)),
    _uc(
        "GCS21j",
        "Read GSME Configuration Data Device Information (Payment Mode)",
        0x00BF,
        _Z,
        ("6.2.9",),
    ),
    _uc(
        "ECS21a",
        "Read Electricity Daily Read Log (exc export)",
        0x0033,
        _D,
        ("4.6.1",),
        encrypted_response=True,
    ),
    _uc("GCS16a", "Read GSME Daily Read log(s)", 0x0077, _Z, ("4.6.1",)),
    _uc(
        "ECS22b",
        "Read Electricity Half Hour Profile Data (active import)",
        0x0037,
        _D,
        ("4.8.1",),
        encrypted_response=True,
    ),
    _uc("GCS17", "Read GSME Profile Data Log", 0x0078, _Z, ("4.8.1",)),
    _uc(
        "ECS66",
        "Read ESME Daily Consumption Log",
        0x0060,
        _D,
        ("4.17",),
        encrypted_response=True,
    ),
    _uc("GCS61", "Read gas Daily Consumption Log", 0x00A0, _Z, ("4.17",)),
    _uc("ECS35a", "Read ESME Event Log", 0x0048, _D, ("6.13",)),
    _uc("ECS35b", "Read ESME Security Log", 0x0049, _D, ("6.13",)),
    _uc("ECS35c", "Read CHF Event Log", 0x0093, _D, ("6.13",)),
    _uc("ECS35d", "Read CHF Security Log", 0x0094, _D, ("6.13",)),
    _uc("ECS35e", "Read ESME Power Event Log", 0x00B9, _D, ("6.13",)),
    _uc("ECS35f", "Read ALCS Event Log", 0x00BA, _D, ("6.13",)),
    _uc("ECS35g", "Read Auxiliary Controller Event Log", 0x00FD, _D, ("6.13",)),
    _uc("CS10a", "Read ZigBee Device Event Log", 0x0014, _Z, ("6.13",)),
    _uc("CS10b", "Read ZigBee Device Security Log", 0x00A1, _Z, ("6.13",)),
    _uc("GCS32", "Remotely close the valve in the GSME", 0x0081, _Z, ("7.2",), critical=True),
    _uc("GCS39", "Arm Valve in GSME", 0x0085, _Z, ("7.3",), critical=True),
    _uc("GCS33", "Read GSME Valve Status", 0x0082, _Z, ("7.4",)),
    _uc("GCS28", "Set time on GSME", 0x007F, _A, ("6.11", "8.1.1"), critical=True),
    _uc("ECS52", "Read ESME/SAPC/Comms Hub Firmware Version", 0x0059, _D, ("11.2",)),
    _uc("GCS38", "Read GSME Firmware Version", 0x0084, _Z, ("11.2",)),
    _uc("CS08", "Read PPMID/HCALCS Firmware Version", 0x0129, _A, ("11.2",)),
    _uc("CS06", "Activate Firmware", 0x0012, _A, ("11.3",), critical=True),
    # CS02b/CS02g Update Security Credentials: one message code per credentials replacement
    # mode (the RTDS folders' names)
    _uc(
        "CS02bSupplierBySupplier",
        "Update Security Credentials (Supplier by Supplier)",
        0x0102,
        _A,
        ("6.15.1",),
        critical=True,
    ),
    _uc(
        "CS02bNOByNO",
        "Update Security Credentials (Network Operator by Network Operator)",
        0x0103,
        _A,
        ("6.15.1",),
        critical=True,
    ),
    _uc(
        "CS02bSupplierByTransCoS",
        "Update Security Credentials (Supplier by Transitional CoS)",
        0x0107,
        _A,
        ("6.23",),
        critical=True,  # signed by the Transitional CoS Party, not by the User
    ),
    _uc(
        "CS02gLoadControllerBySupplier",
        "Update Security Credentials (Load Controller by Supplier)",
        0x0126,
        _A,
        ("6.15.1",),
        critical=True,
    ),
    _uc("CS03A1", "Method A Join (Meter)", 0x000D, _A, ("8.7.1",), critical=True),
    _uc("CS03A2", "Method A Join (non-meter)", 0x00AB, _A, ("8.7.1", "8.7.2")),
    _uc("CS03B", "Method B Join", 0x000E, _A, ("8.7.2",)),
    _uc("CS03C", "Method C Join", 0x00AF, _A, ("8.7.1", "8.7.2")),
)
# ESME prepayment: debt, prepayment configuration, emergency credit and their read
USE_CASES += (
    _uc("ECS07", "Manage Debt on the ESME", 0x001E, _D, ("2.3",), critical=True),
    _uc("ECS08a", "Update Prepayment Configuration on ESME", 0x00DE, _D, ("2.1",), critical=True),
    _uc("ECS09", "Activate Emergency Credit Remotely on ESME", 0x0020, _D, ("2.5",), critical=True),
    _uc("ECS26a", "Read ESME Configuration Data Prepayment", 0x003B, _D, ("4.13",)),
    _uc(
        "ECS21b",
        "Read Electricity (Prepayment) Daily Read Log",
        0x0034,
        _D,
        ("4.14",),
        encrypted_response=True,
    ),
)
# GSME tariff and emergency credit (message codes as the RTDS GCS01a and GCS06 vectors)
USE_CASES += (
    _uc("GCS01a", "Set Tariff and Price on GSME", 0x006B, _Z, ("1.1.1",), critical=True),
    _uc("GCS06", "Activate Emergency Credit Remotely on GSME", 0x0070, _Z, ("2.5",), critical=True),
)

USE_CASES_BY_CODE: dict[int, UseCase] = {uc.message_code: uc for uc in USE_CASES}
USE_CASES_BY_NAME: dict[str, UseCase] = {uc.name: uc for uc in USE_CASES}
ECS17B = USE_CASES_BY_NAME["ECS17b"]


# DLMS objects ECS17b touches
DATA_PROTECTION_CLASS = 30
DATA_PROTECTION_INSTANCE = bytes.fromhex("00002B0208FF")  # 0-0:43.2.8.255
GET_PROTECTED_ATTRIBUTES = 1
IMPORT_REGISTERS_OBIS = bytes.fromhex("00005E2C220A")  # 0-0:94.44.34.10
PROTECTION_ENCRYPTION = 2  # protection_type: encryption
KEY_INFO_AGREED_KEY = 2
KEY_PARAMETERS_C0E2S = b"\x02"  # agreed-key scheme C(0e, 2s)
INVOKE_PRIORITY_BITS = 0x20000000  # as every GBCS Access Request carries
INVOKE_ID_MASK = 0x00FFFFFF

UNIT_WH = 30
UNIT_VARH = 32
ACTION_SUCCESS = 0
ACTION_HARDWARE_FAULT = 1
ACTION_OTHER_REASON = 250


def invoke_id_for(counter: int) -> int:
    """The long-invoke-id-and-priority GBCS uses: the counter's low 24 bits, flags 0x20."""
    return INVOKE_PRIORITY_BITS | (counter & INVOKE_ID_MASK)


def protection_parameters(counter: int, originator_title: bytes, recipient_title: bytes) -> Data:
    """DLMS protection_parameters for agreed-key encryption of one protected attribute set
    (every protected read: ECS17b, ECS21a, ECS22b, ECS66)."""
    transaction_id = b"\x04" + counter.to_bytes(8, "big")
    return dlms.array(
        dlms.structure(
            dlms.enum(PROTECTION_ENCRYPTION),
            dlms.structure(
                dlms.octet_string(transaction_id),
                dlms.octet_string(originator_title),
                dlms.octet_string(recipient_title),
                dlms.octet_string(b""),  # other_information
                dlms.structure(
                    dlms.enum(KEY_INFO_AGREED_KEY),
                    dlms.structure(
                        dlms.octet_string(KEY_PARAMETERS_C0E2S),
                        dlms.octet_string(b""),  # key_ciphered_data: none for agreed keys
                    ),
                ),
            ),
        )
    )


def ecs17b_request(counter: int, originator_title: bytes, device_title: bytes) -> AccessRequest:
    """The ECS17b Access Request: get_protected_attributes on the import register object."""
    object_list = dlms.array(
        dlms.structure(
            dlms.long_unsigned(1),  # class Data
            dlms.octet_string(IMPORT_REGISTERS_OBIS),
            dlms.integer(2),  # attribute: value
            dlms.long_unsigned(0),  # data index
            dlms.structure(dlms.enum(0), dlms.null()),  # no restriction
        )
    )
    return AccessRequest(
        invoke_id_and_priority=invoke_id_for(counter),
        date_time=b"",
        specs=(
            RequestSpec(
                AccessKind.ACTION,
                DATA_PROTECTION_CLASS,
                DATA_PROTECTION_INSTANCE,
                GET_PROTECTED_ATTRIBUTES,
            ),
        ),
        data=(
            dlms.structure(
                object_list, protection_parameters(counter, originator_title, device_title)
            ),
        ),
    )


def build_command(
    use_case: UseCase,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    payload: bytes,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
    other_info_extras: bytes = b"",
) -> bytes:
    """A non-critical command: General Signing for ``use_case`` MAC'd by the ACB's KA key."""
    frame = GeneralSigning(
        cra_flag=use_case.cra_flag,
        originator_counter=counter,
        originator_title=originator_title,
        recipient_title=device_title,
        date_time=None,
        message_code=use_case.message_code,
        other_info_extras=other_info_extras,
        payload=payload,
        signature=None,
        signature_field="unsigned",
    )
    return seal(frame, private_key=acb_ka_private, peer_public_key=device_ka_public).encode()


def build_ecs17b_command(
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """The full ECS17b General Ciphering command from User ``originator_title`` to the ESME."""
    return build_command(
        ECS17B,
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=ecs17b_request(counter, originator_title, device_title).encode(),
        acb_ka_private=acb_ka_private,
        device_ka_public=device_ka_public,
    )


@dataclass(frozen=True)
class ImportRegisters:
    """What ECS17b returns: the ESME's import energy registers.

    Register values are as the meter holds them (``value × 10^scaler`` in the unit; the RTDS
    meters use scaler 0, so Wh and varh). ``secondary_active_import`` is the extra register a
    twin-element ESME appends (the TWIN vector): a bare value in the active import's unit.
    """

    active_import: int
    reactive_import: int
    secondary_active_import: int | None = None
    active_scaler: int = 0
    reactive_scaler: int = 0
    active_unit: int = UNIT_WH
    reactive_unit: int = UNIT_VARH

    @property
    def active_import_wh(self) -> float:
        return float(self.active_import * 10.0**self.active_scaler)

    def to_data(self) -> Data:
        """The plaintext DLMS value: a structure of one protected attribute's value."""
        members = [
            dlms.double_long_unsigned(self.active_import),
            dlms.structure(dlms.integer(self.active_scaler), dlms.enum(self.active_unit)),
            dlms.double_long_unsigned(self.reactive_import),
            dlms.structure(dlms.integer(self.reactive_scaler), dlms.enum(self.reactive_unit)),
        ]
        if self.secondary_active_import is not None:
            members.append(dlms.double_long_unsigned(self.secondary_active_import))
        return dlms.structure(dlms.structure(*members))

    @classmethod
    def from_data(cls, value: Data) -> ImportRegisters:
        """Parse :meth:`to_data`'s layout; :class:`GbcsError` when it does not match."""
        outer = value.items
        if len(outer) != 1:
            raise GbcsError(f"expected one protected attribute, got {len(outer)}")
        members = outer[0].items
        if len(members) not in (4, 5):
            raise GbcsError(f"import registers: unexpected {len(members)} members")
        active_su, reactive_su = members[1].items, members[3].items
        if len(active_su) != 2 or len(reactive_su) != 2:
            raise GbcsError("import registers: bad scaler-unit")
        registers = cls(
            active_import=members[0].integer,
            reactive_import=members[2].integer,
            secondary_active_import=members[4].integer if len(members) == 5 else None,
            active_scaler=active_su[0].integer,
            reactive_scaler=reactive_su[0].integer,
            active_unit=active_su[1].integer,
            reactive_unit=reactive_su[1].integer,
        )
        if registers.to_data() != value:  # types as well as values must match the layout
            raise GbcsError("import registers: unexpected DLMS types")
        return registers


def _response_frame(
    command: GeneralSigning, date_time: bytes | None, payload: bytes
) -> GeneralSigning:
    return GeneralSigning(
        cra_flag=CRA_RESPONSE,
        originator_counter=command.originator_counter,
        originator_title=command.recipient_title,
        recipient_title=command.originator_title,
        date_time=date_time,
        message_code=command.message_code,
        other_info_extras=command.other_info_extras,
        payload=payload,
        signature=None,
        signature_field="unsigned",
    )


def _command_request(command: GeneralCiphering) -> AccessRequest:
    request = dlms.decode_apdu(command.general_signing.payload)
    if not isinstance(request, AccessRequest):
        raise GbcsError("command payload is not a DLMS Access Request")
    return request


def build_ecs17b_response(
    *,
    command: GeneralCiphering,
    registers: ImportRegisters,
    date_time: bytes,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """The ESME's ECS17b response to ``command``.

    CRA 2, titles swapped, the command's counter and message code, ``date_time`` (12-byte DLMS)
    in the header; the registers encrypted for the remote party and the frame MAC'd with the
    device's KA private key and the remote party's KA public key.
    """
    return build_protected_read_response(
        command=command,
        content=registers.to_data(),
        date_time=date_time,
        device_ka_private=device_ka_private,
        recipient_ka_public=recipient_ka_public,
    )


def build_protected_read_response(
    *,
    command: GeneralCiphering,
    content: Data,
    date_time: bytes | None,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """The response to a get_protected_attributes command (ECS17b, ECS21a, ECS22b, ECS66).

    The Access Response's data is the protection parameters (the command's, titles swapped)
    and ``content`` encrypted for the remote party; the frame is CRA 2 with ``date_time``
    (12-byte DLMS, or None where the RTDS response carries none) and MAC'd by the device.
    """
    header = command.general_signing
    request = _command_request(command)
    if len(request.data) != 1 or len(request.data[0].items) != 2:
        raise GbcsError("protected read does not carry object list and protection parameters")
    context = content_context(header)
    block = encrypt_content(
        content.encode(),
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=device_ka_private,
        peer_public_key=recipient_ka_public,
    )
    response = AccessResponse(
        invoke_id_and_priority=request.invoke_id_and_priority,
        date_time=b"",
        request_specs=None,
        data=(
            dlms.structure(
                protection_parameters(
                    header.originator_counter, header.recipient_title, header.originator_title
                ),
                dlms.octet_string(block),
            ),
        ),
        results=(ResponseSpec(AccessKind.ACTION, ACTION_SUCCESS),),
    )
    frame = _response_frame(header, date_time, response.encode())
    return seal(frame, private_key=device_ka_private, peer_public_key=recipient_ka_public).encode()


_RESPONSE_KIND = {
    AccessKind.GET: AccessKind.GET,
    AccessKind.GET_WITH_SELECTION: AccessKind.GET,
    AccessKind.SET: AccessKind.SET,
    AccessKind.SET_WITH_SELECTION: AccessKind.SET,
    AccessKind.ACTION: AccessKind.ACTION,
}


def build_access_error_response(
    *,
    command: GeneralCiphering,
    result: int,
    date_time: bytes,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """A device's negative response to a DLMS command: null data and ``result`` for every
    request specification (e.g. 1 hardware-fault, 250 other-reason), MAC'd as a response."""
    header = command.general_signing
    request = _command_request(command)
    response = AccessResponse(
        invoke_id_and_priority=request.invoke_id_and_priority,
        date_time=b"",
        request_specs=None,
        data=tuple(dlms.null() for _ in request.specs),
        results=tuple(ResponseSpec(_RESPONSE_KIND[spec.kind], result) for spec in request.specs),
    )
    frame = _response_frame(header, date_time, response.encode())
    return seal(frame, private_key=device_ka_private, peer_public_key=recipient_ka_public).encode()


def build_access_response(
    *,
    command: GeneralCiphering,
    data: tuple[Data, ...],
    results: tuple[int, ...],
    date_time: bytes | None,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """A non-critical DLMS command's response: one ``data`` item and one result per request
    specification, General Signing with ``00`` in General Ciphering, MAC'd by the device.
    ``date_time`` is the header's (None for use cases whose responses carry none, e.g. ECS45)."""
    frame = _response_frame(
        command.general_signing, date_time, _access_response(command, data, results)
    )
    return seal(frame, private_key=device_ka_private, peer_public_key=recipient_ka_public).encode()


def build_maced_response(
    *,
    command: GeneralCiphering,
    payload: bytes,
    date_time: bytes | None,
    device_ka_private: ec.EllipticCurvePrivateKey,
    recipient_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """Any non-critical response (DLMS, GBZ or DER ``payload``): CRA 2, titles swapped, the
    command's counter, message code and other-information extras, MAC'd by the device."""
    frame = _response_frame(command.general_signing, date_time, payload)
    return seal(frame, private_key=device_ka_private, peer_public_key=recipient_ka_public).encode()


def build_signed_response(
    *,
    command: GeneralCiphering,
    payload: bytes,
    date_time: bytes | None,
    device_ds_private: ec.EllipticCurvePrivateKey,
) -> bytes:
    """Any critical command's response (DLMS, GBZ or DER ``payload``): General Signing, CRA 2,
    titles swapped, the command's counter and message code, signed with the device's DS key."""
    frame = _response_frame(command.general_signing, date_time, payload)
    return sign_frame(frame, device_ds_private).encode()


def build_signed_access_response(
    *,
    command: GeneralCiphering,
    data: tuple[Data, ...],
    results: tuple[int, ...],
    device_ds_private: ec.EllipticCurvePrivateKey,
    date_time: bytes | None = None,
) -> bytes:
    """A critical DLMS command's response: General Signing signed with the device's DS key,
    not MAC'd, as the RTDS ECS42/43/44/70 responses are (no date-time) and the ECS02/ECS03
    ones (``date_time``, 12-byte DLMS)."""
    frame = _response_frame(
        command.general_signing, date_time, _access_response(command, data, results)
    )
    return sign_frame(frame, device_ds_private).encode()


def _access_response(
    command: GeneralCiphering, data: tuple[Data, ...], results: tuple[int, ...]
) -> bytes:
    request = _command_request(command)
    if len(data) != len(request.specs) or len(results) != len(request.specs):
        raise GbcsError("a DLMS response has one data item and one result per specification")
    return AccessResponse(
        invoke_id_and_priority=request.invoke_id_and_priority,
        date_time=b"",
        request_specs=None,
        data=data,
        results=tuple(
            ResponseSpec(_RESPONSE_KIND[spec.kind], result)
            for spec, result in zip(request.specs, results, strict=True)
        ),
    ).encode()


class DeviceResultError(GbcsError):
    """The device answered, but with a failure result code (``result``)."""

    def __init__(self, result: int) -> None:
        super().__init__(f"device returned result {result}")
        self.result = result


def read_ecs17b_response(
    data: bytes,
    *,
    recipient_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
) -> ImportRegisters:
    """Verify, decrypt and parse an ECS17b response.

    Raises :class:`GbcsError` when the frame is malformed, is not an ECS17b response, its MAC
    or encrypted content does not verify, or the layout is unexpected;
    :class:`DeviceResultError` (a GbcsError) when the device reported a failure.
    """
    message = decode_message(data)
    if not isinstance(message, GeneralCiphering):
        raise GbcsError("ECS17b response is not a General Ciphering frame")
    header = message.general_signing
    if header.cra_flag != CRA_RESPONSE or header.message_code != ECS17B.message_code:
        raise GbcsError(
            f"not an ECS17b response (CRA {header.cra_flag}, code {header.message_code:#06x})"
        )
    if not verify_mac(message, private_key=recipient_ka_private, peer_public_key=device_ka_public):
        raise GbcsError("response MAC does not verify")
    response = dlms.decode_apdu(header.payload)
    if not isinstance(response, AccessResponse) or len(response.results) != 1:
        raise GbcsError("ECS17b response is not a single-result Access Response")
    if response.results[0].result != ACTION_SUCCESS:
        raise DeviceResultError(response.results[0].result)
    if len(response.data) != 1:
        raise GbcsError("ECS17b response carries no data")
    body = response.data[0].items
    if len(body) != 2:
        raise GbcsError("ECS17b response data is not (protection parameters, content)")
    context = content_context(header)
    plaintext = decrypt_content(
        body[1].octets,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=recipient_ka_private,
        peer_public_key=device_ka_public,
    )
    return ImportRegisters.from_data(dlms.Data.decode(plaintext))


def read_protected_content(
    message: GeneralCiphering,
    *,
    recipient_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
) -> Data:
    """The decrypted content of a successful protected read's response (the MAC is the
    caller's to check). :class:`DeviceResultError` when the device reported a failure,
    :class:`GbcsError` when the layout is not (protection parameters, encrypted content)."""
    header = message.general_signing
    response = dlms.decode_apdu(header.payload)
    if not isinstance(response, AccessResponse) or len(response.results) != 1:
        raise GbcsError("protected read response is not a single-result Access Response")
    if response.results[0].result != ACTION_SUCCESS:
        raise DeviceResultError(response.results[0].result)
    if len(response.data) != 1 or len(response.data[0].items) != 2:
        raise GbcsError("protected read response data is not (protection parameters, content)")
    context = content_context(header)
    plaintext = decrypt_content(
        response.data[0].items[1].octets,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=recipient_ka_private,
        peer_public_key=device_ka_public,
    )
    return dlms.Data.decode(plaintext)
