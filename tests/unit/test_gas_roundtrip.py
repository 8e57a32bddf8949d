"""Every gas row of the transformation table, built by transform and answered by the emulated
GSME or GPF: the answer is the row's use case (not a ZCL Default Response refusing it), MAC'd
for its recipient (signed by the device for a critical row, whose Pre-Command the User signs),
and its content decrypts for the User. The joins (8.7.x), the credentials update (6.15.1) and
firmware activation (11.3), DER use cases the GSME shares with the ESME, have tests of their own
(tests/unit/test_gsme_joins.py, test_gsme_credentials.py, test_gsme_firmware.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.gbcs.crypto import (
    content_context,
    decrypt_content,
    ecdsa_sign_raw,
    verify_frame_signature,
    verify_mac,
)
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import INT32, PREPAYMENT, decode_gbz, decode_zcl_payload
from emulators.device import RemoteParty
from emulators.gpf import Gpf
from emulators.gsme import (
    DEFAULT_RESPONSE,
    PREPAYMENT_CREDIT_REMAINING,
    ZCL_UNSUPPORTED_CLUSTER_COMMAND,
    GasLoadProfile,
    GasRegisters,
    GbzDevice,
    Gsme,
)
from services.transform.srvs import (
    SR_NS,
    TRANSFORMATIONS,
    Transformation,
    build_command,
    build_pre_command,
    command_from_signed_pre_command,
    user_extras,
)

DEVICE_EUI = bytes.fromhex("00DCC50000000103")
SUPPLIER_EUI = bytes.fromhex("90B3D51F3001D000")
ACB_EUI = bytes.fromhex("90B3D51F30000002")
NOW = datetime(2026, 3, 1, 9, 17, tzinfo=UTC)
GAS = GasRegisters(GasLoadProfile.from_seed(7), datetime(2026, 1, 1, tzinfo=UTC))
SHARED_DER_ROWS = frozenset({"6.15.1", "11.3"})
GAS_ROWS = [
    t
    for t in TRANSFORMATIONS
    if t.device_type in ("GSME", "GPF")
    and t.join_use_cases is None
    and t.srv not in SHARED_DER_ROWS
]


class Keys:
    def __init__(self) -> None:
        self.acb = ec.generate_private_key(ec.SECP256R1())
        self.device = ec.generate_private_key(ec.SECP256R1())
        self.supplier = ec.generate_private_key(ec.SECP256R1())
        self.supplier_ds = ec.generate_private_key(ec.SECP256R1())
        self.device_ds = ec.generate_private_key(ec.SECP256R1())


def _model(device_type: str, keys: Keys) -> GbzDevice:
    parties = {
        SUPPLIER_EUI: RemoteParty(
            SUPPLIER_EUI, keys.supplier.public_key(), keys.supplier_ds.public_key()
        ),
        ACB_EUI: RemoteParty(ACB_EUI, keys.acb.public_key()),
    }
    common = {
        "eui": DEVICE_EUI,
        "ka_private_key": keys.device,
        "ds_private_key": keys.device_ds,
        "acb_ka_public": keys.acb.public_key(),
        "remote_parties": parties,
        "clock": lambda: NOW,
    }
    if device_type == "GPF":
        return Gpf(**common, mirror=GAS)  # type: ignore[arg-type]
    return Gsme(**common, load_profile=GAS.profile, epoch=GAS.epoch)  # type: ignore[arg-type]


def _body(transformation: Transformation) -> etree._Element:
    period = (
        "<sr:ReadLogPeriod><sr:StartDateTime>2026-02-20T00:00:00Z</sr:StartDateTime>"
        "<sr:EndDateTime>2026-02-22T00:00:00Z</sr:EndDateTime></sr:ReadLogPeriod>"
    )
    clock = (
        f"<sr:CurrentDateTime>{NOW:%Y-%m-%dT%H:%M:%SZ}</sr:CurrentDateTime>"
        "<sr:TolerancePeriod>600</sr:TolerancePeriod>"
    )
    day = "<sr:{0}WithWildcards><sr:NonSpecified{0}/></sr:{0}WithWildcards>"
    date = "".join(day.format(f"Gas{f}") for f in ("Year", "Month", "DayOfMonth", "DayOfWeek"))
    week = "".join(
        f'<sr:ReferencedDayName index="{n}">1</sr:ReferencedDayName>' for n in range(1, 8)
    )
    gas_tariff = (
        "<sr:GasTariffElements><sr:SwitchingTable><sr:DayProfiles><sr:DayProfile>"
        "<sr:DayName>1</sr:DayName><sr:TOUTariffAction>1</sr:TOUTariffAction>"
        "</sr:DayProfile></sr:DayProfiles><sr:WeekProfiles><sr:WeekProfile>"
        f"<sr:WeekName>1</sr:WeekName>{week}</sr:WeekProfile></sr:WeekProfiles>"
        f"<sr:Seasons><sr:Season><sr:SeasonStartDate>{date}</sr:SeasonStartDate>"
        "<sr:ReferencedWeekName>1</sr:ReferencedWeekName></sr:Season></sr:Seasons>"
        "</sr:SwitchingTable><sr:SpecialDays/><sr:ThresholdMatrix>"
        '<sr:BlockThreshold index="1">1</sr:BlockThreshold></sr:ThresholdMatrix>'
        "</sr:GasTariffElements><sr:PriceElements><sr:GasPriceElements>"
        "<sr:CurrencyUnits>GBP</sr:CurrencyUnits><sr:StandingCharge>100</sr:StandingCharge>"
        '<sr:TOUTariff><sr:TOUPrice index="1">9600</sr:TOUPrice></sr:TOUTariff>'
        "</sr:GasPriceElements></sr:PriceElements>"
    )
    inner = {
        "1.1.1": gas_tariff,
        "2.2": "<sr:UTRN>73950067887105178605</sr:UTRN>",
        "4.8.1": period,
        "4.17": period,
        "4.6.1": period,
        "6.13": period + "<sr:LogToRead>Event</sr:LogToRead>",
        "3.1": "<sr:SupplierMessage>Hello</sr:SupplierMessage>",
        "1.6": "<sr:Credit/>",
        "6.11": clock,
        "8.1.1": clock,
    }.get(transformation.srv, "")
    return etree.fromstring(
        f'<sr:{transformation.body_element} xmlns:sr="{SR_NS}">{inner}'
        f"</sr:{transformation.body_element}>".encode()
    )


@pytest.mark.parametrize(
    "transformation", GAS_ROWS, ids=[f"{t.srv}-{t.device_type}" for t in GAS_ROWS]
)
def test_gas_row_is_answered_by_the_device_model(transformation: Transformation) -> None:
    keys = Keys()
    body = _body(transformation)
    originator, counter, extras = SUPPLIER_EUI, 1000, b""
    if transformation.acb_originated:
        originator, counter = ACB_EUI, 5000
        extras = user_extras(SUPPLIER_EUI, 1000) + transformation.user_certificate_der(body)
    if transformation.critical:
        pre = build_pre_command(
            transformation,
            originator_title=originator,
            device_title=DEVICE_EUI,
            counter=counter,
            body=body,
        )
        command = command_from_signed_pre_command(
            pre + b"\x40" + ecdsa_sign_raw(keys.supplier_ds, pre[1:]),
            pre_command=pre,
            user_ds_public=keys.supplier_ds.public_key(),
            acb_ka_private=keys.acb,
            device_ka_public=keys.device.public_key(),
        )
    else:
        command = build_command(
            transformation,
            originator_title=originator,
            device_title=DEVICE_EUI,
            counter=counter,
            acb_ka_private=keys.acb,
            device_ka_public=keys.device.public_key(),
            body=body,
            other_info_extras=extras,
        )
    model = _model(transformation.device_type, keys)
    if isinstance(model, Gsme) and transformation.use_case == "GCS06":
        # emergency credit is on offer only once the credit has run low
        model.attributes[(PREPAYMENT, PREPAYMENT_CREDIT_REMAINING)] = (INT32, 0)
    response = decode_message(model.handle(command))
    if transformation.critical:
        assert isinstance(response, GeneralSigning)
        assert verify_frame_signature(response, keys.device_ds.public_key())
        frame = response
    else:
        assert isinstance(response, GeneralCiphering)
        recipient = keys.acb if originator == ACB_EUI else keys.supplier
        assert verify_mac(response, private_key=recipient, peer_public_key=keys.device.public_key())
        frame = response.general_signing
    assert frame.cra_flag == 2 and frame.originator_title == DEVICE_EUI
    assert frame.recipient_title == originator
    assert frame.message_code == USE_CASES_BY_NAME[transformation.use_case_for(body)].message_code
    if frame.payload[:2] != b"\x01\x09":  # DER (GCS28): result 0, the clock set
        assert frame.payload.endswith(b"\x02\x01\x00")
        return
    for component in decode_gbz(frame.payload).components:
        if component.header.command == DEFAULT_RESPONSE and not component.header.cluster_specific:
            # success (3.1) or nothing logged yet (6.13), never "unsupported"
            status = component.payload.values["status"]
            assert status != ZCL_UNSUPPORTED_CLUSTER_COMMAND, "the model refused the command"
            assert status in (0x00, 0x8B)
            continue
        if component.encrypted_content is None:
            assert all(r.get("status") == 0 for r in component.payload.records)
            continue
        context = content_context(frame)
        assert context.recipient_title == SUPPLIER_EUI
        plaintext = decrypt_content(
            component.encrypted_content,
            device_title=DEVICE_EUI,
            counter=context.counter,
            recipient_title=SUPPLIER_EUI,
            private_key=keys.supplier,
            peer_public_key=keys.device.public_key(),
        )
        zcl = decode_zcl_payload(component.cluster, component.header, plaintext)
        assert zcl.layout is not None and not zcl.rest
        assert zcl.records or zcl.values
