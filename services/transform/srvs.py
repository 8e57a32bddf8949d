"""The transformation table: which (SRV, device type) becomes which GBCS use case, and how.

Pure functions over the DUIS body and keys; the service (app.py) does the I/O.

- Non-critical SRVs (CV 1/2/3): :func:`build_command` -> the General Ciphering command, MAC'd
  by the ACB.
- Critical SRVs: CV 4 -> :func:`build_pre_command` (returned to the User in ``PreCommand``);
  CV 5/6/7 -> :func:`command_from_signed_pre_command` checks the User's Signed Pre-Command
  against the Pre-Command issued for that RequestID and the User's DS key, then the ACB wraps it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from threading import Lock

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.duis.codes import DuisError
from dccsim.duis.requestid import parse_eui
from dccsim.gbcs import critical
from dccsim.gbcs.commands import (
    BLOCK_SCRIPT_OFFSET,
    DEBT_RECOVERY_PERIODS,
    KRP_REPLACEMENTS,
    WEEKDAYS,
    CommandContext,
    DayProfile,
    GasTariff,
    NonDisablementEntry,
    Tariff,
    TariffDate,
    command_payload,
)
from dccsim.gbcs.crypto import sign_frame
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.usecases import build_command as build_gbcs_command

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"

BodyParameters = Callable[["etree._Element | None"], dict[str, object]]


def _no_parameters(_body: etree._Element | None) -> dict[str, object]:
    return {}


class ServiceRequestBodyError(GbcsError):
    """The DUIS body lacks a value the command needs, or holds one this device cannot take.

    The request itself is at fault, so the service answers the User (E13) rather than retry.
    """


def _child_text(body: etree._Element | None, path: str) -> str:
    """The text at ``path`` (local names joined by ``/``) below the DUIS body element."""
    element = body
    for local in path.split("/"):
        element = None if element is None else element.find(f"{{{SR_NS}}}{local}")
    if element is None or not (element.text or "").strip():
        raise ServiceRequestBodyError(f"DUIS body has no {path}")
    return (element.text or "").strip()


def _date_time(body: etree._Element | None, path: str) -> dt.datetime:
    """An xs:dateTime of the body as an aware datetime (no zone: DUIS means UTC)."""
    text = _child_text(body, path)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad {path} {text!r}: {exc}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _clock_parameters(body: etree._Element | None) -> dict[str, object]:
    """SynchroniseClock / CommissionDeviceSynchroniseClock: CurrentDateTime, TolerancePeriod."""
    when = _date_time(body, "CurrentDateTime")
    try:
        tolerance = int(_child_text(body, "TolerancePeriod"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad SynchroniseClock value: {exc}") from exc
    return {"current_date_time": when, "tolerance_period": tolerance}


def _display_message_parameters(body: etree._Element | None) -> dict[str, object]:
    """DisplayMessage: SupplierMessage, the text for the meter's display."""
    return {"supplier_message": _child_text(body, "SupplierMessage")}


def _top_up_parameters(body: etree._Element | None) -> dict[str, object]:
    """TopUpDevice: UTRN, the 20-digit top-up code."""
    return {"utrn": _child_text(body, "UTRN")}


def _log_period_parameters(body: etree._Element | None) -> dict[str, object]:
    """ReadLogPeriod's StartDateTime and EndDateTime (6.13 and the 4.6.1/4.8.1/4.17 reads)."""
    return {
        "start_date_time": _date_time(body, "ReadLogPeriod/StartDateTime"),
        "end_date_time": _date_time(body, "ReadLogPeriod/EndDateTime"),
    }


def _issued(parameters: BodyParameters = _no_parameters) -> BodyParameters:
    """``parameters`` plus ``issued_at``, the DCC's time of transformation: a GBZ command's
    ZCL Issuer Event ID (and Display Message's Message ID) is the time it was issued
    (``issuer_event_id`` in dccsim/gbcs/commands.py); ``extra_parameters`` may fix it."""

    def read(body: etree._Element | None) -> dict[str, object]:
        return {"issued_at": dt.datetime.now(dt.UTC).replace(microsecond=0), **parameters(body)}

    return read


# 8.11 Update HAN Device Log: DUIS RequestType -> the CHF use case
HAN_DEVICE_LOG_REQUESTS: dict[str, str] = {"Add": "CCS01", "Remove": "CCS02"}


def _han_device_log_use_case(body: etree._Element | None) -> str:
    request_type = _child_text(body, "RequestType")
    use_case = HAN_DEVICE_LOG_REQUESTS.get(request_type)
    if use_case is None:
        raise ServiceRequestBodyError(f"RequestType {request_type} is neither Add nor Remove")
    return use_case


def _han_device_log_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateHANDeviceLog: DeviceID (the HAN device), and to add it the
    AddDeviceToCHFWhitelist's JoinTimePeriod (seconds) and InstallCode (hex, 16 octets).
    The device's type is not in the body: the service adds ``device_type`` from the inventory.
    """
    text = _child_text(body, "DeviceID")
    try:
        parameters: dict[str, object] = {"device_id": parse_eui(text)}
    except DuisError as exc:
        raise ServiceRequestBodyError(f"bad DeviceID {text!r}: {exc}") from exc
    if _han_device_log_use_case(body) == "CCS01":
        add = "AddDeviceToCHFWhitelist"
        try:
            parameters["join_time_period"] = int(_child_text(body, f"{add}/JoinTimePeriod"))
            parameters["install_code"] = bytes.fromhex(_child_text(body, f"{add}/InstallCode"))
        except ValueError as exc:
            raise ServiceRequestBodyError(f"bad {add} value: {exc}") from exc
    return parameters


def _boolean(body: etree._Element | None, path: str) -> bool:
    text = _child_text(body, path)
    if text not in ("true", "false", "1", "0"):
        raise ServiceRequestBodyError(f"bad {path} {text!r}: not an xs:boolean")
    return text in ("true", "1")


def _optional(body: etree._Element | None, path: str) -> bool:
    element = body
    for local in path.split("/"):
        element = None if element is None else element.find(f"{{{SR_NS}}}{local}")
    return element is not None


def _execution_date_time(body: etree._Element | None) -> dict[str, object]:
    """A future-datable SR's optional ExecutionDateTime (absent: now; 3000-12-31: cancel)."""
    if not _optional(body, "ExecutionDateTime"):
        return {}
    return {"execution_date_time": _date_time(body, "ExecutionDateTime")}


# 1.6 to an ESME: the DUIS payment mode chosen -> the ECS use case
PAYMENT_MODES: dict[str, str] = {"Credit": "ECS02", "Prepayment": "ECS03"}


# 1.6 to a GSME: the ESME use case of the mode chosen -> the GSME's
GAS_PAYMENT_MODES: dict[str, str] = {"ECS02": "GCS02", "ECS03": "GCS03"}


def _payment_mode_use_case(body: etree._Element | None) -> str:
    for mode, use_case in PAYMENT_MODES.items():
        if _optional(body, mode):
            return use_case
    raise ServiceRequestBodyError("UpdatePaymentMode names neither Credit nor Prepayment")


def _payment_mode_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdatePaymentMode: ExecutionDateTime (optional), and for Prepayment its
    SuspendDebtDisabled, SuspendDebtEmergency and DisablementThreshold."""
    parameters = _execution_date_time(body)
    if _payment_mode_use_case(body) == "ECS03":
        try:
            threshold = int(_child_text(body, "Prepayment/DisablementThreshold"))
        except ValueError as exc:
            raise ServiceRequestBodyError(f"bad DisablementThreshold: {exc}") from exc
        parameters |= {
            "disablement_threshold": threshold,
            "suspend_debt_disabled": _boolean(body, "Prepayment/SuspendDebtDisabled"),
            "suspend_debt_emergency": _boolean(body, "Prepayment/SuspendDebtEmergency"),
        }
    return parameters


def _activate_firmware_parameters(body: etree._Element | None) -> dict[str, object]:
    """ActivateFirmware: FirmwareHash (hex, the SHA-256 of the image), ExecutionDateTime."""
    text = _child_text(body, "FirmwareHash")
    try:
        image_hash = bytes.fromhex(text)
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad FirmwareHash {text!r}: {exc}") from exc
    return {"firmware_hash": image_hash, **_execution_date_time(body)}


def _der_text(text: str, path: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceRequestBodyError(f"bad {path}: not base64 ({exc})") from exc


def _base64_der(body: etree._Element | None, path: str) -> bytes:
    """A base64Binary certificate of the body as DER bytes."""
    return _der_text(_child_text(body, path), path)


def _optional_int(body: etree._Element | None, path: str) -> int | None:
    if not _optional(body, path):
        return None
    try:
        return int(_child_text(body, path))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad {path}: {exc}") from exc


def _krp_use_case(body: etree._Element | None) -> str:
    role = _child_text(body, "RemotePartyRole")
    replacement = KRP_REPLACEMENTS.get(role)
    if replacement is None:
        raise ServiceRequestBodyError(f"RemotePartyRole {role} cannot replace its own credentials")
    return replacement.use_case


# 6.15.1: the RemotePartyRoles whose cells each meter holds. The GSME has Supplier and Network
# Operator (gas transporter) cells, as the ESME; only the ESME has a Load Controller's (CS02g).
KRP_ROLES_BY_DEVICE_TYPE: dict[str, frozenset[str]] = {
    "ESME": frozenset(KRP_REPLACEMENTS),
    "GSME": frozenset({"Supplier", "NetworkOperator"}),
}


def _krp_use_case_of(device_type: str) -> Callable[[etree._Element | None], str]:
    """6.15.1's use case by the body's RemotePartyRole, for a ``device_type`` meter."""
    roles = KRP_ROLES_BY_DEVICE_TYPE[device_type]

    def use_case(body: etree._Element | None) -> str:
        role = _child_text(body, "RemotePartyRole")
        if role in KRP_REPLACEMENTS and role not in roles:
            raise ServiceRequestBodyError(f"a {device_type} holds no {role} credentials")
        return _krp_use_case(body)

    return use_case


_CERTIFICATES = "ReplacementCertificates/SupplierOrNetworkOperatorCertificates"


def _krp_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateSecurityCredentialsKRP: the replacement certificates (base64 DER), the
    certification path, the floor seq numbers, ApplyTimeBasedCPVChecks, ExecutionDateTime."""
    _krp_use_case(body)
    parameters: dict[str, object] = {
        "floor_seq_number": _optional_int(body, "RemotePartyFloorSeqNumber"),
        "prepayment_top_up_floor_seq_number": _optional_int(
            body, "RemotePartyPrepaymentTopUpFloorSeqNumber"
        ),
        "apply_time_based_cpv_checks": _boolean(body, "ApplyTimeBasedCPVChecks"),
        **_execution_date_time(body),
    }
    parameters |= _replacement_certificates(body, _CERTIFICATES)
    parameters["certification_path_certificates"] = _certification_path(body)
    return parameters


def _replacement_certificates(body: etree._Element | None, holder: str) -> dict[str, object]:
    """The replacement certificates below ``holder`` (DER), by command parameter name."""
    parameters: dict[str, object] = {}
    for name, element in (
        ("digital_signing_certificate", "DigitalSigningCertificate"),
        ("key_agreement_certificate", "KeyAgreementCertificate"),
        ("key_agreement_top_up_certificate", "KeyAgreementTopUpCertificate"),
    ):
        if _optional(body, f"{holder}/{element}"):
            parameters[name] = _base64_der(body, f"{holder}/{element}")
    return parameters


def _certification_path(body: etree._Element | None) -> list[bytes]:
    path = None if body is None else body.find(f"{{{SR_NS}}}CertificationPathCertificates")
    return [
        _der_text(c.text or "", "CertificationPathCertificates/Certificate")
        for c in ([] if path is None else path.findall(f"{{{SR_NS}}}Certificate"))
    ]


_COS_CERTIFICATES = "SupplierReplacementCertificates"


def _cos_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateSecurityCredentialsCoS: the new Supplier's certificates, its floor seq numbers,
    the certification path, ApplyTimeBasedCPVChecks, ExecutionDateTime."""
    parameters: dict[str, object] = {
        "floor_seq_number": _optional_int(body, "SupplierFloorSeqNumber"),
        "prepayment_top_up_floor_seq_number": _optional_int(
            body, "SupplierPrepaymentTopUpFloorSeqNumber"
        ),
        "apply_time_based_cpv_checks": _boolean(body, "ApplyTimeBasedCPVChecks"),
        "certification_path_certificates": _certification_path(body),
        **_execution_date_time(body),
    }
    parameters |= _replacement_certificates(body, _COS_CERTIFICATES)
    return parameters


def _clear_event_log_use_case(body: etree._Element | None) -> str:
    """ClearEventLog's ESMEEventLogType: the ESME's own event log (the default) -> ECS15a;
    the ALCS event log is not held by the emulated ESME."""
    kind = _child_text(body, "ESMEEventLogType") if _optional(body, "ESMEEventLogType") else "ESME"
    if kind != "ESME":
        raise ServiceRequestBodyError(f"ESMEEventLogType {kind} is not a log of this ESME")
    return "ECS15a"


MPAN_DIGITS = 13


def _import_mpxn_parameters(body: etree._Element | None) -> dict[str, object]:
    """SetDeviceConfigurationImportMPxN to an ESME: ImportMPANs/ImportMPAN and, for a
    twin-element ESME, SecondaryImportMPAN, written one after the other as ASCII. (6.20.1 is
    future-dated by the DSP: the User Gateway holds it, the command carries no date-time.)"""
    if _optional(body, "ImportMPRN"):
        raise ServiceRequestBodyError("an ESME takes ImportMPANs, not an ImportMPRN")
    mpans = [_child_text(body, "ImportMPANs/ImportMPAN")]
    if _optional(body, "ImportMPANs/SecondaryImportMPAN"):
        mpans.append(_child_text(body, "ImportMPANs/SecondaryImportMPAN"))
    if any(len(m) != MPAN_DIGITS or not m.isdigit() for m in mpans):
        raise ServiceRequestBodyError(f"an MPAN is {MPAN_DIGITS} digits: {mpans}")
    return {"import_mpxn": "".join(mpans).encode("ascii")}


def _children(element: etree._Element | None, path: str) -> list[etree._Element]:
    """The elements at ``path`` (local names joined by ``/``, the last one repeated)."""
    *parents, last = path.split("/")
    for local in parents:
        element = None if element is None else element.find(f"{{{SR_NS}}}{local}")
    return [] if element is None else element.findall(f"{{{SR_NS}}}{last}")


def _int(element: etree._Element | None, path: str) -> int:
    try:
        return int(_child_text(element, path))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad {path}: {exc}") from exc


def _indexed(elements: list[etree._Element], path: str) -> list[etree._Element]:
    """``elements`` in the order of their ``index`` attribute (1, 2, ...)."""
    try:
        ordered = sorted(elements, key=lambda e: int(e.get("index", "0")))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad index on {path}: {exc}") from exc
    if [int(e.get("index", "0")) for e in ordered] != list(range(1, len(ordered) + 1)):
        raise ServiceRequestBodyError(f"{path} is not indexed 1..{len(ordered)}")
    return ordered


# a DUIS Date's day of month besides a number: DLMS's special values
_DAY_OF_MONTH = {"LastDayOfMonth": 0xFE, "SecondLastDayOfMonth": 0xFD}


def _tariff_date(element: etree._Element | None, path: str) -> TariffDate:
    """A DUIS Date (Year, Month, DayOfMonth, DayOfWeek, each Specified... or not)."""
    date = element
    for local in path.split("/"):
        date = None if date is None else date.find(f"{{{SR_NS}}}{local}")
    if date is None:
        raise ServiceRequestBodyError(f"DUIS body has no {path}")

    def field(name: str, specified: str) -> int | None:
        if _optional(date, f"{name}/{specified}"):
            return _int(date, f"{name}/{specified}")
        for special, value in _DAY_OF_MONTH.items():
            if name == "DayOfMonth" and _optional(date, f"{name}/{special}"):
                return value
        if _optional(date, f"{name}/NonSpecified{name}"):
            return None
        raise ServiceRequestBodyError(f"{path}/{name} is neither specified nor not")

    return TariffDate(
        field("Year", "SpecifiedYear"),
        field("Month", "SpecifiedMonth"),
        field("DayOfMonth", "SpecifiedDayOfMonth"),
        field("DayOfWeek", "SpecifiedDayOfWeek"),
    )


def _start_time(text: str) -> tuple[int, int, int]:
    try:
        when = dt.time.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad StartTime {text!r}: {exc}") from exc
    return when.hour, when.minute, when.second


# a day profile action: the DUIS element -> the script selector of its first rate
_TARIFF_ACTIONS = {"TOUTariffAction": 0, "BlockTariffAction": BLOCK_SCRIPT_OFFSET}
_ELEC = "ElecTariffElements"
# the DUIS price element kinds: TOU prices, block prices, or both
_PRICE_KINDS = ("TOUTariff", "BlockTariff", "HybridTariff")


def _number(element: etree._Element) -> int:
    """An element's text as an integer; :class:`ServiceRequestBodyError` if it is none."""
    text = (element.text or "").strip()
    try:
        return int(text)
    except ValueError as exc:
        local = etree.QName(element).localname
        raise ServiceRequestBodyError(f"bad {local} {text!r}: not an integer") from exc


_PRICES = "PriceElements/ElectricityPriceElements"


def _import_tariff_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateImportTariffPrimaryElement: the switching table (day and week profiles,
    seasons), special days, threshold matrix and prices, as a :class:`Tariff`; and the
    optional ExecutionDateTime. The meter's currency is GBP (the only one it shows)."""
    currency = _child_text(body, f"{_ELEC}/CurrencyUnits")
    if currency != "GBP":
        raise ServiceRequestBodyError(f"CurrencyUnits {currency}: the ESME prices in GBP")
    table = f"{_ELEC}/SwitchingTable"
    days = []
    for day in _children(body, f"{table}/DayProfiles/DayProfile"):
        actions = []
        for schedule in _children(day, "ProfileSchedule"):
            start = _start_time(_child_text(schedule, "StartTime"))
            kinds = [k for k in _TARIFF_ACTIONS if _optional(schedule, k)]
            if len(kinds) != 1:
                raise ServiceRequestBodyError("a ProfileSchedule has one tariff action")
            actions.append((start, _TARIFF_ACTIONS[kinds[0]] + _int(schedule, kinds[0])))
        days.append(DayProfile(_int(day, "DayName"), tuple(actions)))
    weeks = []
    for week in _children(body, f"{table}/WeekProfiles/WeekProfile"):
        refs = _indexed(_children(week, "ReferencedDayName"), "ReferencedDayName")
        if len(refs) != 7:
            raise ServiceRequestBodyError("a WeekProfile names 7 days")
        weeks.append((_int(week, "WeekName"), tuple(_number(r) for r in refs)))
    seasons = [
        (
            _child_text(season, "SeasonName").encode("ascii"),
            _tariff_date(season, "SeasonStartDate"),
            _int(season, "ReferencedWeekName"),
        )
        for season in _children(body, f"{table}/Seasons/Season")
    ]
    special_days = [
        (_tariff_date(day, "Date"), _int(day, "ReferencedDayName"))
        for day in _children(body, f"{_ELEC}/SpecialDays/SpecialDay")
    ]
    thresholds = tuple(
        tuple(_number(t) for t in _indexed(_children(rate, "BlockThreshold"), "BlockThreshold"))
        for rate in _indexed(_children(body, f"{_ELEC}/ThresholdMatrix/Thresholds"), "Thresholds")
    )
    kinds = [k for k in _PRICE_KINDS if _optional(body, f"{_PRICES}/{k}")]
    if len(kinds) != 1:
        raise ServiceRequestBodyError(f"the prices are one of {', '.join(_PRICE_KINDS)}")
    prices = f"{_PRICES}/{kinds[0]}"
    tou = _indexed(_children(body, f"{prices}/TOUPrice"), "TOUPrice")
    blocks = [
        ((int(rate.get("index", "0")), int(price.get("index", "0"))), _number(price))
        for rate in _indexed(_children(body, f"{prices}/BlockPrices"), "BlockPrices")
        for price in _indexed(_children(rate, "BlockPrice"), "BlockPrice")
    ]
    try:
        tariff = Tariff(
            seasons=tuple(seasons),
            weeks=tuple(weeks),
            days=tuple(days),
            special_days=tuple(special_days),
            thresholds=thresholds,
            standing_charge=_int(body, f"{_PRICES}/StandingCharge"),
            standing_charge_scale=_int(body, f"{_PRICES}/StandingChargeScale"),
            price_scale=_int(body, f"{_PRICES}/PriceScale"),
            tou_prices=tuple(_number(p) for p in tou),
            block_prices=tuple(blocks),
        )
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad tariff value: {exc}") from exc
    return {"tariff": tariff, **_execution_date_time(body)}


def _power_threshold_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateDeviceConfigurationInstantaneousPowerThreshold: the two thresholds in W."""
    return {
        "low_medium_power_threshold": _int(body, "LowMediumPowerThreshold"),
        "medium_high_power_threshold": _int(body, "MediumHighPowerThreshold"),
    }


def _join_parameters(body: etree._Element | None) -> dict[str, object]:
    """JoinServiceCritical / JoinServiceNonCritical: OtherDeviceID, the device to join. Its
    type (and for Method C its KA certificate) is not in the body: the service adds
    ``other_device_type`` from the inventory and ``other_device_certificate``."""
    text = _child_text(body, "OtherDeviceID")
    try:
        return {"other_device_id": parse_eui(text)}
    except DuisError as exc:
        raise ServiceRequestBodyError(f"bad OtherDeviceID {text!r}: {exc}") from exc


# 8.7.1 / 8.7.2: (target device type, use case by the other device's type), as the RTDS:
# a meter initiates Method A with a Type 1 device (CS03A1 to the ESME); a GSME, battery
# powered, takes the Type 1 device's certificate (CS03C); the Type 1 device answers Method A
# with an ESME (CS03A2, signed by the Supplier to an HCALCS); Method B a Type 2 device (CS03B).
_TYPE1_DEVICES = ("PPMID", "HCALCS")
CRITICAL_JOINS: dict[str, dict[str, str]] = {
    "ESME": dict.fromkeys(_TYPE1_DEVICES, "CS03A1"),
    "GSME": dict.fromkeys(_TYPE1_DEVICES, "CS03C"),
    "HCALCS": {"ESME": "CS03A2", "GSME": "CS03C"},
}
NON_CRITICAL_JOINS: dict[str, dict[str, str]] = {
    "ESME": dict.fromkeys(("IHD", "CAD"), "CS03B"),
    "GSME": dict.fromkeys(("IHD", "CAD", "GPF"), "CS03B"),
}
# 8.7.2 to a PPMID: the ACB originates and signs it for the User (the RTDS CS03A2/CS03C)
ACB_SIGNED_JOINS: dict[str, dict[str, str]] = {"PPMID": {"ESME": "CS03A2", "GSME": "CS03C"}}


# 6.13 to an ESME: DUIS LogToRead -> the ECS35 use case reading that log. The ALCS and GSME
# logs are not read from an ESME here (the emulated ESME has neither).
ESME_LOGS: dict[str, str] = {"Event": "ECS35a", "Security": "ECS35b", "PowerEvent": "ECS35e"}


# 6.13 to a GSME: its (ZigBee device) event and security logs
GSME_LOGS: dict[str, str] = {"Event": "CS10a", "Security": "CS10b"}


def _log_use_case(body: etree._Element | None, logs: Mapping[str, str]) -> str:
    log = _child_text(body, "LogToRead")
    use_case = logs.get(log)
    if use_case is None:
        raise ServiceRequestBodyError(f"LogToRead {log} is not a log of this device")
    return use_case


def _esme_log_use_case(body: etree._Element | None) -> str:
    log = _child_text(body, "LogToRead")
    use_case = ESME_LOGS.get(log)
    if use_case is None:
        raise ServiceRequestBodyError(f"LogToRead {log} is not a log of an ESME")
    return use_case


@dataclass(frozen=True)
class Transformation:
    """How one (SRV, device type) becomes GBCS: its use case and how to read its DUIS body.

    ``use_case`` is the use case, or the representative one when ``select`` picks it from the
    body (6.13: one ECS35 use case per log); all the use cases of one row share criticality.
    """

    srv: str
    device_type: str
    use_case: str
    body_element: str
    parameters: BodyParameters = field(default=_no_parameters)
    select: Callable[[etree._Element | None], str] | None = None
    # The DCC's own commands (8.11 to a CHF): the grouping-header originator is the ACB, with
    # its own counter; the User's EUI and DUIS counter go in the Other Information extras.
    acb_originated: bool = False
    # the DUIS body's DeviceID is a HAN device whose inventory device type the command needs
    needs_han_device_type: bool = False
    # 6.23: a GBCS-critical command the DCC's Transitional CoS Party originates and signs
    # (:func:`build_cos_command`); the User sends an ordinary, non-critical request
    cos_signed: bool = False
    # an acb_originated command whose Other Information also carries the User's KA
    # certificate, from this body element (4.17 to a GPF: GCS61's KAPublicSecurityCredentials)
    user_certificate: str | None = None
    # 8.7.x: the use case by the inventory device type of the body's OtherDeviceID (the
    # ``other_device_type`` parameter the service adds); a type not here cannot join this way
    join_use_cases: Mapping[str, str] | None = None
    # critical because the SRV is, where the GBCS use case alone is not (8.7.1's CS03A2/CS03C)
    critical_srv: bool = False
    # an acb_originated command the ACB also signs with its DS key (8.7.2 to a PPMID: the
    # Type 1 device takes only signed joins, and the RTDS CS03A2/CS03C carry the ACB's)
    acb_signed: bool = False

    def user_certificate_der(self, body: etree._Element | None) -> bytes:
        """The DER of the User's KA certificate the body carries for the Other Information
        extras, or b"" when this SRV takes none or the body leaves it out (it is optional)."""
        if self.user_certificate is None or not _optional(body, self.user_certificate):
            return b""
        return _base64_der(body, self.user_certificate)

    @property
    def critical(self) -> bool:
        """Whether the User signs the command (CV 4, then CV 5)."""
        critical = USE_CASES_BY_NAME[self.use_case].critical or self.critical_srv
        return critical and not self.cos_signed

    def use_case_for(
        self, body: etree._Element | None, parameters: Mapping[str, object] | None = None
    ) -> str:
        """The use case this request's body (and, for a join, the ``other_device_type`` in
        ``parameters``) asks for; :class:`ServiceRequestBodyError` if none."""
        if self.join_use_cases is not None:
            other = str((parameters or {}).get("other_device_type"))
            use_case = self.join_use_cases.get(other)
            if use_case is None:
                raise ServiceRequestBodyError(
                    f"SRV {self.srv} cannot join a {other} to a {self.device_type}"
                )
            return use_case
        return self.use_case if self.select is None else self.select(body)

    def payload(
        self,
        *,
        originator_title: bytes,
        device_title: bytes,
        counter: int,
        body: etree._Element | None = None,
        extra_parameters: Mapping[str, object] | None = None,
    ) -> bytes:
        parameters = {**self.parameters(body), **(extra_parameters or {})}
        context = CommandContext(counter, originator_title, device_title, parameters)
        return command_payload(self.use_case_for(body, parameters), context)


TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation("4.1.1", "ESME", "ECS17b", "ReadInstantaneousImportRegisters"),
    Transformation("6.11", "ESME", "ECS70", "SynchroniseClock", _clock_parameters),
    Transformation("8.1.1", "ESME", "ECS70", "CommissionDeviceSynchroniseClock", _clock_parameters),
    Transformation("7.1", "ESME", "ECS42", "EnableSupply"),
    Transformation("7.2", "ESME", "ECS43", "DisableSupply"),
    Transformation("7.3", "ESME", "ECS44", "ArmSupply"),
    Transformation("7.4", "ESME", "ECS45", "ReadSupplyStatus"),
    Transformation("11.2", "ESME", "ECS52", "ReadFirmwareVersion"),
    Transformation("3.1", "ESME", "ECS10", "DisplayMessage", _display_message_parameters),
    Transformation("2.2", "ESME", "CS01a", "TopUpDevice", _top_up_parameters),
    Transformation(
        "1.1.1", "ESME", "ECS01a", "UpdateImportTariffPrimaryElement", _import_tariff_parameters
    ),
    Transformation("4.11.1", "ESME", "ECS24", "ReadTariffPrimaryElement"),
    Transformation(
        "1.6",
        "ESME",
        "ECS02",
        "UpdatePaymentMode",
        _payment_mode_parameters,
        select=_payment_mode_use_case,
    ),
    Transformation("6.2.9", "ESME", "ECS26j", "ReadDeviceConfigurationPaymentMode"),
    Transformation("3.3", "ESME", "ECS15a", "ClearEventLog", select=_clear_event_log_use_case),
    Transformation("3.5", "ESME", "ECS14", "DisablePrivacyPIN"),
    Transformation("4.16", "ESME", "ECS17c", "ReadActivePowerImport"),
    Transformation(
        "6.12",
        "ESME",
        "ECS34",
        "UpdateDeviceConfigurationInstantaneousPowerThreshold",
        _power_threshold_parameters,
    ),
    Transformation(
        "6.20.1", "ESME", "ECS39a", "SetDeviceConfigurationImportMPxN", _import_mpxn_parameters
    ),
    # the GBCS "CS" use cases an ESME and a GSME share: 11.3 CS06, 6.15.1 CS02b (CS02g too,
    # to an ESME); 6.23 below
    *(
        row
        for device_type in ("ESME", "GSME")
        for row in (
            Transformation(
                "11.3", device_type, "CS06", "ActivateFirmware", _activate_firmware_parameters
            ),
            Transformation(
                "6.15.1",
                device_type,
                "CS02bSupplierBySupplier",
                "UpdateSecurityCredentialsKRP",
                _krp_parameters,
                select=_krp_use_case_of(device_type),
            ),
        )
    ),
    Transformation("4.6.1", "ESME", "ECS21a", "RetrieveImportDailyReadLog", _log_period_parameters),
    Transformation(
        "4.8.1", "ESME", "ECS22b", "ReadActiveImportProfileData", _log_period_parameters
    ),
    Transformation("4.17", "ESME", "ECS66", "RetrieveDailyConsumptionLog", _log_period_parameters),
    Transformation(
        "6.13",
        "ESME",
        "ECS35a",
        "ReadEventOrSecurityLog",
        _log_period_parameters,
        select=_esme_log_use_case,
    ),
    Transformation(
        "8.11",
        "CHF",
        "CCS01",
        "UpdateHANDeviceLog",
        _han_device_log_parameters,
        select=_han_device_log_use_case,
        acb_originated=True,
        needs_han_device_type=True,
    ),
    # Gas: GBZ commands to the GSME, or to the GPF for the reads it answers from its GSME
    # mirror (the RTDS "RELIABLE" templates target the GPF) and its daily consumption log.
    *(
        Transformation(srv, device_type, use_case, body_element)
        for srv, use_case, body_element in (
            ("4.1.1", "GCS13a", "ReadInstantaneousImportRegisters"),
            ("4.1.2", "GCS13c", "ReadInstantaneousImportTOUMatrices"),
            ("4.18", "GCS60a", "ReadMeterBalance"),
        )
        for device_type in ("GSME", "GPF")
    ),
    Transformation("4.8.1", "GSME", "GCS17", "ReadActiveImportProfileData", _log_period_parameters),
    Transformation(
        "4.17",
        "GPF",
        "GCS61",
        "RetrieveDailyConsumptionLog",
        _log_period_parameters,
        # the GPF holds no User's credentials: the ACB sends it for the User, passing the
        # User's KA certificate for the encrypted log (as the RTDS GCS61 command)
        acb_originated=True,
        user_certificate="KAPublicSecurityCredentials",
    ),
    *(
        Transformation(
            "8.7.1",
            device_type,
            next(iter(joins.values())),
            "JoinServiceCritical",
            _join_parameters,
            join_use_cases=joins,
            critical_srv=True,
        )
        for device_type, joins in CRITICAL_JOINS.items()
    ),
    *(
        Transformation(
            "8.7.2",
            device_type,
            next(iter(joins.values())),
            "JoinServiceNonCritical",
            _join_parameters,
            join_use_cases=joins,
        )
        for device_type, joins in NON_CRITICAL_JOINS.items()
    ),
    *(
        Transformation(
            "8.7.2",
            device_type,
            next(iter(joins.values())),
            "JoinServiceNonCritical",
            _join_parameters,
            join_use_cases=joins,
            acb_originated=True,
            acb_signed=True,
        )
        for device_type, joins in ACB_SIGNED_JOINS.items()
    ),
    Transformation("11.2", "GSME", "GCS38", "ReadFirmwareVersion"),
    Transformation("7.4", "GSME", "GCS33", "ReadSupplyStatus"),
    Transformation("6.2.9", "GSME", "GCS21j", "ReadDeviceConfigurationPaymentMode"),
    Transformation("3.1", "GSME", "GCS07", "DisplayMessage", _issued(_display_message_parameters)),
    Transformation("4.6.1", "GSME", "GCS16a", "RetrieveImportDailyReadLog", _log_period_parameters),
    Transformation(
        "6.13",
        "GSME",
        "CS10a",
        "ReadEventOrSecurityLog",
        _log_period_parameters,
        select=lambda body: _log_use_case(body, GSME_LOGS),
    ),
    # Gas commands that change the GSME (critical: CV 4, then CV 5)
    Transformation("7.2", "GSME", "GCS32", "DisableSupply", _issued()),
    Transformation("7.3", "GSME", "GCS39", "ArmSupply", _issued()),
    Transformation("6.11", "GSME", "GCS28", "SynchroniseClock", _clock_parameters),
    Transformation("8.1.1", "GSME", "GCS28", "CommissionDeviceSynchroniseClock", _clock_parameters),
    Transformation(
        "1.6",
        "GSME",
        "GCS02",
        "UpdatePaymentMode",
        _issued(_payment_mode_parameters),
        select=lambda body: GAS_PAYMENT_MODES[_payment_mode_use_case(body)],
    ),
)

# -- ESME prepayment: 2.1 Update Prepay Configuration (ECS08a), 2.3 Update Debt (ECS07),
# 2.5 Activate Emergency Credit (ECS09), 4.13 Read Prepayment Configuration (ECS26a)


def _debt_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateDebt to an ESME: the adjustments of TimeDebtRegister1/2 and PaymentDebtRegister,
    DebtRecoveryPerPayment, and each ElecDebtRecovery1/2's rate, price scale and period."""
    if _optional(body, "GasDebtRecovery1"):
        raise ServiceRequestBodyError("an ESME takes ElecDebtRecovery, not GasDebtRecovery")
    parameters: dict[str, object] = {
        "time_debt_register_1": _int(body, "TimeDebtRegister1"),
        "time_debt_register_2": _int(body, "TimeDebtRegister2"),
        "payment_debt_register": _int(body, "PaymentDebtRegister"),
        "debt_recovery_per_payment": _int(body, "DebtRecoveryPerPayment"),
    }
    for n in (1, 2):
        recovery = f"ElecDebtRecovery{n}"
        period = _child_text(body, f"{recovery}/DebtRecoveryRatePeriod")
        if period not in DEBT_RECOVERY_PERIODS:
            raise ServiceRequestBodyError(f"bad {recovery}/DebtRecoveryRatePeriod {period}")
        parameters |= {
            f"debt_recovery_rate_{n}": _int(body, f"{recovery}/DebtRecoveryRate"),
            f"debt_recovery_price_scale_{n}": _int(body, f"{recovery}/DebtRecoveryRatePriceScale"),
            f"debt_recovery_period_{n}": DEBT_RECOVERY_PERIODS[period],
        }
    return parameters


def _schedule_date(text: str, path: str) -> TariffDate:
    """A non-disablement schedule xs:date; year 65535 is "every year" (not specified)."""
    try:
        year, month, day = (int(part) for part in text.rstrip("Z").split("+")[0].split("-"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad {path} {text!r}: {exc}") from exc
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ServiceRequestBodyError(f"bad {path} {text!r}")
    return TariffDate(None if year == 0xFFFF else year, month, day)


_PREPAY = "UpdatePrepayConfigElectricity"
_CALENDAR = f"{_PREPAY}/ElectricityNonDisablementCalendar"


def _non_disablement_entry(entry: etree._Element) -> NonDisablementEntry:
    weekdays = []
    for day in _children(entry, "DaysOfWeekApplicability/DayOfWeekApplicability"):
        name = _child_text(day, "DayOfWeekID")
        if name not in WEEKDAYS:
            raise ServiceRequestBodyError(f"bad DayOfWeekID {name}")
        weekdays.append(WEEKDAYS.index(name))
    special = [
        _int(day, "SpecialDayID")
        for day in _children(entry, "SpecialDaysApplicability/SpecialDayApplicability")
    ]
    times = "ScheduleDatesAndTime"
    return NonDisablementEntry(
        script=_child_text(entry, "NonDisablementScript"),
        switch_time=_start_time(_child_text(entry, f"{times}/SwitchTime")),
        start=_schedule_date(_child_text(entry, f"{times}/StartDate"), "StartDate"),
        end=_schedule_date(_child_text(entry, f"{times}/EndDate"), "EndDate"),
        weekdays=tuple(sorted(weekdays)),
        special_days=tuple(sorted(special)),
    )


def _prepay_configuration_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdatePrepayConfiguration to an ESME: the debt recovery rate cap, emergency credit
    limit and threshold, low credit threshold, max meter balance, max credit threshold, the
    non-disablement calendar (special days, schedule), and the optional ExecutionDateTime."""
    if not _optional(body, _PREPAY):
        raise ServiceRequestBodyError(f"an ESME takes {_PREPAY}")
    special_days = tuple(
        _tariff_date(day, "Date")
        for day in _indexed(
            _children(body, f"{_CALENDAR}/ElectricitySpecialDays/SpecialDay"), "SpecialDay"
        )
    )
    entries = _children(body, f"{_CALENDAR}/ElectricityNonDisablementSchedule")
    parameters: dict[str, object] = {
        name: _int(body, f"{_PREPAY}/{element}")
        for name, element in (
            ("debt_recovery_rate_cap", "DebtRecoveryRateCap"),
            ("emergency_credit_limit", "EmergencyCreditLimit"),
            ("emergency_credit_threshold", "EmergencyCreditThreshold"),
            ("low_credit_threshold", "LowCreditThreshold"),
            ("max_meter_balance", "MaxMeterBalance"),
            ("max_credit_threshold", "MaxCreditThreshold"),
        )
    }
    return {
        **parameters,
        "non_disablement_special_days": special_days,
        "non_disablement_schedule": tuple(_non_disablement_entry(e) for e in entries),
        **_execution_date_time(body),
    }


PREPAYMENT_TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation(
        "2.1", "ESME", "ECS08a", "UpdatePrepayConfiguration", _prepay_configuration_parameters
    ),
    Transformation("2.3", "ESME", "ECS07", "UpdateDebt", _debt_parameters),
    Transformation("2.5", "ESME", "ECS09", "ActivateEmergencyCredit"),
    Transformation("4.13", "ESME", "ECS26a", "ReadPrepaymentConfiguration"),
    # the known remote party's read (the URP variant, for another User, is not built yet)
    Transformation("4.14", "ESME", "ECS21b", "ReadPrepaymentDailyReadLog", _log_period_parameters),
)
TRANSFORMATIONS += PREPAYMENT_TRANSFORMATIONS

# -- Gas tariff, top-up and emergency credit: 1.1.1, 2.2 and 2.5 to a GSME -----------------------

_GAS = "GasTariffElements"
_GAS_PRICES = "PriceElements/GasPriceElements"
# a gas Date's fields: the DUIS element and its Specified... child
_GAS_DATE_FIELDS = (
    ("GasYearWithWildcards", "SpecifiedYear"),
    ("GasMonthWithWildcards", "SpecifiedMonth"),
    ("GasDayOfMonthWithWildcards", "SpecifiedDayOfMonth"),
    ("GasDayOfWeekWithWildcards", "SpecifiedDayOfWeek"),
)


def _gas_date(element: etree._Element | None, path: str) -> TariffDate:
    """A DUIS gas Date (each of its fields Specified... or NonSpecified...)."""
    date = element
    for local in path.split("/"):
        date = None if date is None else date.find(f"{{{SR_NS}}}{local}")
    if date is None:
        raise ServiceRequestBodyError(f"DUIS body has no {path}")
    values: list[int | None] = []
    for name, specified in _GAS_DATE_FIELDS:
        if _optional(date, f"{name}/{specified}"):
            values.append(_int(date, f"{name}/{specified}"))
        elif _optional(date, name):
            values.append(None)  # NonSpecified...: any
        else:
            raise ServiceRequestBodyError(f"{path} has no {name}")
    return TariffDate(*values)


def _gas_tariff_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateImportTariffPrimaryElement to a GSME: its GasTariffElements (switching table,
    special days, threshold matrix) and GasPriceElements as a :class:`GasTariff`, and the
    optional ExecutionDateTime. A TOU tariff's ThresholdMatrix is a placeholder the schema
    needs (the RTDS command carries no thresholds); a block tariff's thresholds are the
    ThresholdMatrix's, as the RTDS command's (it carries all three where the request's
    NumberOfThresholds says 2). The GSME prices in GBP only."""
    currency = _child_text(body, f"{_GAS_PRICES}/CurrencyUnits")
    if currency != "GBP":
        raise ServiceRequestBodyError(f"CurrencyUnits {currency}: the GSME prices in GBP")
    table = f"{_GAS}/SwitchingTable"
    days = []
    for day in _children(body, f"{table}/DayProfiles/DayProfile"):
        tier = _int(day, "TOUTariffAction") if _optional(day, "TOUTariffAction") else 0
        days.append((_int(day, "DayName"), tier))
    weeks = []
    for week in _children(body, f"{table}/WeekProfiles/WeekProfile"):
        refs = _indexed(_children(week, "ReferencedDayName"), "ReferencedDayName")
        weeks.append((_int(week, "WeekName"), tuple(_number(r) for r in refs)))
    seasons = tuple(
        (_gas_date(season, "SeasonStartDate"), _int(season, "ReferencedWeekName"))
        for season in _children(body, f"{table}/Seasons/Season")
    )
    special_days = tuple(
        (_gas_date(day, "Date"), _int(day, "ReferencedDayName"))
        for day in _children(body, f"{_GAS}/SpecialDays/SpecialDay")
    )
    block = _optional(body, f"{_GAS_PRICES}/BlockTariff")
    if block == _optional(body, f"{_GAS_PRICES}/TOUTariff"):
        raise ServiceRequestBodyError("the gas prices are one of BlockTariff and TOUTariff")
    prices = tuple(
        _number(p)
        for p in _indexed(
            _children(body, f"{_GAS_PRICES}/BlockTariff/BlockPrice")
            if block
            else _children(body, f"{_GAS_PRICES}/TOUTariff/TOUPrice"),
            "BlockPrice" if block else "TOUPrice",
        )
    )
    thresholds = (
        tuple(
            _number(t)
            for t in _indexed(
                _children(body, f"{_GAS}/ThresholdMatrix/BlockThreshold"), "BlockThreshold"
            )
        )
        if block
        else ()
    )
    if block and any(day_tier for _, day_tier in days):
        raise ServiceRequestBodyError("a block tariff's day profiles are BlockTariff")
    if not block and any(not 1 <= day_tier <= len(prices) for _, day_tier in days):
        raise ServiceRequestBodyError("a TOUTariffAction names a tier without a TOUPrice")
    try:
        tariff = GasTariff(
            days=tuple(days),
            weeks=tuple(weeks),
            seasons=seasons,
            special_days=special_days,
            standing_charge=_int(body, f"{_GAS_PRICES}/StandingCharge"),
            tou_prices=() if block else prices,
            block_prices=prices if block else (),
            thresholds=thresholds,
        )
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad gas tariff: {exc}") from exc
    return {"gas_tariff": tariff, **_execution_date_time(body)}


GAS_PREPAYMENT_TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation(
        "1.1.1",
        "GSME",
        "GCS01a",
        "UpdateImportTariffPrimaryElement",
        _issued(_gas_tariff_parameters),
    ),
    Transformation("2.2", "GSME", "CS01b", "TopUpDevice", _top_up_parameters),
    Transformation("2.5", "GSME", "GCS06", "ActivateEmergencyCredit"),
)
TRANSFORMATIONS += GAS_PREPAYMENT_TRANSFORMATIONS

# Transformations the DCC signs itself (6.23: the Transitional CoS Party, whose DS key
# `dccsim pki init` issues, dccsim/pki/cos.py): :func:`build_cos_command`, not build_command.
COS_TRANSFORMATIONS: tuple[Transformation, ...] = tuple(
    Transformation(
        "6.23",
        device_type,
        "CS02bSupplierByTransCoS",
        "UpdateSecurityCredentialsCoS",
        _cos_parameters,
        cos_signed=True,
    )
    for device_type in ("ESME", "GSME")
)

TRANSFORMATIONS_BY_KEY: dict[tuple[str, str], Transformation] = {
    (t.srv, t.device_type): t for t in (*TRANSFORMATIONS, *COS_TRANSFORMATIONS)
}


def lookup(srv: str, device_type: str) -> Transformation | None:
    return TRANSFORMATIONS_BY_KEY.get((srv, device_type))


def build_command(
    transformation: Transformation,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
    body: etree._Element | None = None,
    other_info_extras: bytes = b"",
    extra_parameters: Mapping[str, object] | None = None,
    acb_ds_private: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A non-critical SRV's GBCS command, MAC'd by the ACB.

    For an ``acb_originated`` transformation ``originator_title`` and ``counter`` are the
    ACB's and ``other_info_extras`` is :func:`user_extras` (the User's EUI and DUIS counter);
    an ``acb_signed`` one is signed with ``acb_ds_private`` before the MAC.
    """
    if transformation.critical:
        raise GbcsError(f"{transformation.srv} is critical: it needs a Signed Pre-Command")
    if transformation.cos_signed:
        raise GbcsError(f"{transformation.srv} is signed by the CoS Party: build_cos_command")
    payload = transformation.payload(
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        body=body,
        extra_parameters=extra_parameters,
    )
    use_case = USE_CASES_BY_NAME[transformation.use_case_for(body, extra_parameters)]
    if transformation.acb_signed:
        if acb_ds_private is None:
            raise GbcsError(f"{transformation.srv} to a {transformation.device_type} is signed")
        frame = critical.pre_command_frame(
            dataclasses.replace(use_case, critical=True),  # a signed command, as a critical one
            originator_title=originator_title,
            device_title=device_title,
            counter=counter,
            payload=payload,
            other_info_extras=other_info_extras,
        )
        return critical.wrap_command(
            sign_frame(frame, acb_ds_private),
            acb_ka_private=acb_ka_private,
            device_ka_public=device_ka_public,
        )
    return build_gbcs_command(
        use_case,
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
        acb_ka_private=acb_ka_private,
        device_ka_public=device_ka_public,
        other_info_extras=other_info_extras,
    )


def build_cos_command(
    transformation: Transformation,
    *,
    cos_title: bytes,
    cos_counter: int,
    cos_ds_private: ec.EllipticCurvePrivateKey,
    device_title: bytes,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
    body: etree._Element | None = None,
) -> bytes:
    """6.23's command: the Transitional CoS Party (``cos_title``, its own ``cos_counter``)
    originates the credentials update and signs it with its DS key; the ACB MACs it."""
    if not transformation.cos_signed:
        raise GbcsError(f"{transformation.srv} is not signed by the CoS Party")
    payload = transformation.payload(
        originator_title=cos_title, device_title=device_title, counter=cos_counter, body=body
    )
    frame = critical.pre_command_frame(
        USE_CASES_BY_NAME[transformation.use_case_for(body)],
        originator_title=cos_title,
        device_title=device_title,
        counter=cos_counter,
        payload=payload,
    )
    return critical.wrap_command(
        sign_frame(frame, cos_ds_private),
        acb_ka_private=acb_ka_private,
        device_ka_public=device_ka_public,
    )


def user_extras(user_eui: bytes, user_counter: int) -> bytes:
    """The Other Information extras of a command the ACB originates for a User: the User's
    EUI-64 and DUIS RequestID counter (8 octets each)."""
    if len(user_eui) != 8 or not 0 <= user_counter < 1 << 64:
        raise GbcsError("User extras need an EUI-64 and a 64-bit counter")
    return user_eui + user_counter.to_bytes(8, "big")


class AcbCounter:
    """The ACB's originator counters for the commands it originates (8.11 to a CHF).

    Strictly increasing, from the wall clock in nanoseconds, so that a restarted transform
    continues above the counters the CHFs have already accepted. One per transform process:
    several processes could interleave out of order (a CHF then refuses the older as a replay).
    """

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._clock())
            return self._last


def build_pre_command(
    transformation: Transformation,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    body: etree._Element | None = None,
    extra_parameters: Mapping[str, object] | None = None,
) -> bytes:
    """A critical SRV's Pre-Command (CV 4), for the ``PreCommand/GBCSPayload`` response.

    ``extra_parameters`` are what the command needs beyond the DUIS body (e.g. ``twin`` for a
    twin-element ESME's 1.6)."""
    if not transformation.critical:
        raise GbcsError(f"{transformation.srv} is not critical: it has no Pre-Command")
    payload = transformation.payload(
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        body=body,
        extra_parameters=extra_parameters,
    )
    use_case = USE_CASES_BY_NAME[transformation.use_case_for(body, extra_parameters)]
    if transformation.critical_srv:
        use_case = dataclasses.replace(use_case, critical=True)
    return critical.build_pre_command(
        use_case,
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
    )


command_from_signed_pre_command = critical.command_from_signed_pre_command


class PreCommandRegister:
    """The Pre-Commands issued, by RequestID, until their Signed Pre-Command arrives.

    In memory and bounded (oldest forgotten first): enough for one transform process. Several
    transform processes need a shared store behind the same two methods.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._issued: OrderedDict[str, bytes] = OrderedDict()
        self._lock = Lock()

    def put(self, request_id: str, pre_command: bytes) -> None:
        with self._lock:
            self._issued[request_id] = pre_command
            self._issued.move_to_end(request_id)
            while len(self._issued) > self.maxsize:
                self._issued.popitem(last=False)

    def get(self, request_id: str) -> bytes | None:
        with self._lock:
            return self._issued.get(request_id)

    def __len__(self) -> int:
        return len(self._issued)
