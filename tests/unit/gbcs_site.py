"""Test helpers shared by the ESME and GSME tests: the reference RTDS vectors and keystore,
fresh key sets, and a MAC'd non-critical exchange with a device model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.xml import ServiceRequest, parse_service_request
from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import UseCase, build_command
from dccsim.pki.files import parse_private_key
from emulators.device import GbcsDevice
from services.transform.srvs import (
    Transformation,
    build_pre_command,
    command_from_signed_pre_command,
    lookup,
)
from services.transform.srvs import build_command as build_srv_command

SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
ACB_KA = "90b3d51f30000002-ka"  # the reference keystore's ACB KA key
# the hash of the firmware image the RTDS CS06 (11.3) vectors activate
RTDS_HASH = bytes.fromhex("AA758690730934FF0685AA758690730934FF0685657788990011223344556677")
# the RTDS CS06 activation cases: (vector prefix, images the meter holds, the version it runs
# if not its default)
CS06_ACTIVATIONS: list[tuple[str, dict[bytes, bytes], bytes | None]] = [
    # the RTDS meter activates the image it holds (version 0123ABCE) ...
    ("CS06_11.3_IMMEDIATE_SUCCESS", {RTDS_HASH: bytes.fromhex("0123ABCE")}, None),
    # ... or, holding none with that hash, keeps running 0123ABCF
    ("CS06_11.3_IMMEDIATE_ERROR", {}, bytes.fromhex("0123ABCF")),
    ("CS06_11.3_FUTURE_DATED_SUCCESS", {}, None),
    ("CS06_11.3_CANCELLATION_SUCCESS", {}, None),
]


def rtds(reference_dir: Path, relative: str) -> bytes:
    """The RTDS vector at ``relative`` (under reference/gbcs/rtds), its bytes."""
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / relative).read_text())


def rtds_payload(message: bytes) -> bytes:
    """The payload of an RTDS message, inside its General Ciphering wrapper if it has one."""
    frame = decode_message(message)
    return frame.general_signing.payload if isinstance(frame, GeneralCiphering) else frame.payload


def public_in(keystore: Path, name: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of the certificate ``name``.pem in the folder ``keystore``."""
    key = x509.load_pem_x509_certificate((keystore / f"{name}.pem").read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def private_in(keystore: Path, name: str) -> ec.EllipticCurvePrivateKey:
    """The EC private key ``name``.key (PEM or DER) in the folder ``keystore``."""
    key = parse_private_key((keystore / f"{name}.key").read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def keystore_public(reference_dir: Path, name: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of the reference keystore's certificate ``name``.pem."""
    return public_in(reference_dir / "gbcs" / "keystore", name)


def keystore_private(reference_dir: Path, name: str = ACB_KA) -> ec.EllipticCurvePrivateKey:
    """The reference keystore's EC private key ``name``.key; the ACB's KA key by default."""
    return private_in(reference_dir / "gbcs" / "keystore", name)


def rtds_esme_stand_in(
    reference_dir: Path, party: str = SUPPLIER_EUI.hex()
) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
    """``party``'s reference KA private key and the RTDS ESME's KA public key: static ECDH is
    symmetric, so they stand in for the ESME's unpublished KA key pair."""
    return keystore_private(reference_dir, f"{party}-ka"), keystore_public(
        reference_dir, "00db1234567890a0-ka"
    )


def fresh_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key pair."""
    return ec.generate_private_key(ec.SECP256R1())


class ReadKeys:
    """Fresh KA keys for the ACB, a device and a Supplier: enough for MAC'd reads."""

    def __init__(self) -> None:
        self.acb = fresh_key()
        self.device = fresh_key()
        self.supplier = fresh_key()


@dataclass
class CriticalKeys:
    """Fresh keys for the ACB, a device (KA, DS) and a Supplier (KA, DS)."""

    acb: ec.EllipticCurvePrivateKey
    device_ka: ec.EllipticCurvePrivateKey
    device_ds: ec.EllipticCurvePrivateKey
    supplier_ka: ec.EllipticCurvePrivateKey
    supplier_ds: ec.EllipticCurvePrivateKey

    @classmethod
    def fresh(cls) -> CriticalKeys:
        """Five new key pairs."""
        return cls(*(fresh_key() for _ in range(5)))


def mac_exchange(
    device: GbcsDevice,
    keys: ReadKeys,
    use_case: UseCase,
    payload: bytes,
    *,
    device_title: bytes,
    counter: int,
) -> GeneralCiphering:
    """``use_case``'s command from the Supplier, MAC'd by the ACB; ``device``'s answer, its MAC
    checked with the Supplier's KA key."""
    command = build_command(
        use_case,
        originator_title=SUPPLIER_EUI,
        device_title=device_title,
        counter=counter,
        payload=payload,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device.public_key(),
    )
    message = decode_message(device.handle(command))
    assert isinstance(message, GeneralCiphering)
    assert verify_mac(message, private_key=keys.supplier, peer_public_key=keys.device.public_key())
    return message


def duis_template(reference_dir: Path, file_name: str) -> ServiceRequest:
    """The DUIS template ``file_name`` (under reference/duis/templates), parsed."""
    return parse_service_request((reference_dir / "duis" / "templates" / file_name).read_bytes())


def checked_transformation(
    request: ServiceRequest, device_type: str, *, critical: bool
) -> Transformation:
    """``request``'s transformation to ``device_type``, checked to be (non-)critical, with the
    command variant (4 or 1) and body element that go with it."""
    assert request.command_variant == (4 if critical else 1)
    transformation = lookup(request.service_reference_variant, device_type)
    assert transformation is not None and transformation.critical == critical
    assert request.body_name == transformation.body_element
    return transformation


def request_pre_command(
    transformation: Transformation,
    request: ServiceRequest,
    extra_parameters: dict[str, object] | None = None,
) -> bytes:
    """The transform's Pre-Command for ``request``: its Request ID's titles and counter, its
    body."""
    rid = request.request_id
    return build_pre_command(
        transformation,
        originator_title=rid.originator,
        device_title=rid.target,
        counter=rid.counter,
        body=request.body,
        extra_parameters=extra_parameters,
    )


def build_rtds_command(
    reference_dir: Path,
    transformation: Transformation,
    request: ServiceRequest,
    extra_parameters: dict[str, object] | None = None,
) -> bytes:
    """The non-critical command for ``request``, MAC'd with the reference keystore's keys."""
    rid = request.request_id
    return build_srv_command(
        transformation,
        originator_title=rid.originator,
        device_title=rid.target,
        counter=rid.counter,
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, f"{rid.target.hex()}-ka"),
        body=request.body,
        extra_parameters=extra_parameters,
    )


def assert_rtds_command_wraps(
    reference_dir: Path,
    rtds_command: bytes,
    pre_command: bytes,
    *,
    originator: bytes,
    target: bytes,
) -> GeneralCiphering:
    """Check the RTDS command is ``pre_command`` signed by ``originator``, ACB-wrapped for
    ``target`` (reference keystore keys); the command, decoded."""
    command = decode_message(rtds_command)
    assert isinstance(command, GeneralCiphering)
    wrapped = command_from_signed_pre_command(
        command.general_signing.encode(),
        pre_command=pre_command,
        user_ds_public=keystore_public(reference_dir, f"{originator.hex()}-ds"),
        acb_ka_private=keystore_private(reference_dir),
        device_ka_public=keystore_public(reference_dir, f"{target.hex()}-ka"),
    )
    assert wrapped == command.encode()
    return command
