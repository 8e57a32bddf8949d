"""GBCS frames, DLMS APDUs and MACs over every RTDS vector, plus fuzzing of the decoders."""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from dccsim.gbcs.crypto import (
    content_context,
    decrypt_content,
    ecdsa_sign_raw,
    ecdsa_verify_raw,
    seal,
    sign_frame,
    verify_frame_signature,
    verify_mac,
)
from dccsim.gbcs.dlms import AccessResponse, CompactArray, Data, DataType, decode_apdu
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)

ACB_KA = "90b3d51f30000002-ka"
DLMS_TAGS = (0xD9, 0xDA, 0x0F)
CONTENT_HEADER = bytes.fromhex("3100000000")
# A real ECS17b command (SINGLE_SUCCESS_COMMAND), the seed for the fuzz tests.
ECS17B_COMMAND = bytes.fromhex(
    "DD00000000000081951100000000DF090100000000000003E80890B3D51F300100000800DB1234567890A0"
    "0002002761D9200003E8000103001E00002B0208FF0101020201010205120001090600005E2C220A0F0212"
    "00000202160000010102021602020509090400000000000003E8090890B3D51F30010000090800DB123456"
    "7890A00900020216020202090102090000F08A88FCB4EEBECA47B71589"
)


def _vectors(reference_dir: Path) -> list[Path]:
    return sorted((reference_dir / "gbcs" / "rtds").rglob("*.HEX"))


@cache
def _private(keystore: Path, name: str) -> ec.EllipticCurvePrivateKey | None:
    path = keystore / f"{name}.key"
    if not path.exists():
        return None
    data = path.read_bytes()
    key = (
        serialization.load_pem_private_key(data, None)
        if data.startswith(b"-----")
        else serialization.load_der_private_key(data, None)
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@cache
def _public(keystore: Path, name: str) -> ec.EllipticCurvePublicKey | None:
    path = keystore / f"{name}.pem"
    if not path.exists():
        return None
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _general_signing(message: GeneralCiphering | GeneralSigning) -> GeneralSigning:
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def _decoded(reference_dir: Path) -> list[tuple[Path, GeneralCiphering | GeneralSigning]]:
    return [
        (path, decode_message(parse_hex_or_base64(path.read_text())))
        for path in _vectors(reference_dir)
    ]


def test_every_vector_decodes_to_the_last_byte_and_reencodes(reference_dir: Path) -> None:
    paths = _vectors(reference_dir)
    assert paths, "no RTDS vectors found"
    for path in paths:
        data = parse_hex_or_base64(path.read_text())
        message = decode_message(data)  # raises unless every byte is consumed
        assert message.encode() == data, path.name
    print(f"\nGBCS frames decoded and re-encoded byte-identical: {len(paths)}")
    assert len(paths) >= 816


def test_every_dlms_payload_decodes_and_reencodes(reference_dir: Path) -> None:
    kinds: Counter[int] = Counter()
    for path, message in _decoded(reference_dir):
        payload = _general_signing(message).payload
        if payload[0] in DLMS_TAGS:
            assert decode_apdu(payload).encode() == payload, path.name
            kinds[payload[0]] += 1
    print(f"\nDLMS APDUs round-tripped: {dict(kinds)}")
    assert kinds[0xD9] and kinds[0xDA] and kinds[0x0F]


def _mac_key_pairs(
    keystore: Path, frame: GeneralSigning
) -> list[tuple[ec.EllipticCurvePrivateKey | None, ec.EllipticCurvePublicKey | None]]:
    originator, recipient = frame.originator_title.hex(), frame.recipient_title.hex()
    if _public(keystore, f"{originator}-ka") and not _private(keystore, f"{originator}-ka"):
        # a device originated it (PCS01/PCS02): device KA private keys are not published
        return [(_private(keystore, f"{recipient}-ka"), _public(keystore, f"{originator}-ka"))]
    if frame.cra_flag == CRA_COMMAND:
        return [(_private(keystore, ACB_KA), _public(keystore, f"{recipient}-ka"))]
    return [(_private(keystore, f"{recipient}-ka"), _public(keystore, f"{originator}-ka"))]


def test_every_verifiable_mac_verifies(reference_dir: Path) -> None:
    """Commands: ACB KA key + device KA cert; responses and alerts: recipient KA key + device
    KA cert. Only the device-to-device PCS01/PCS02 lack keys (their device keys are not
    published)."""
    keystore = reference_dir / "gbcs" / "keystore"
    totals: Counter[int] = Counter()
    verified: Counter[int] = Counter()
    unverifiable: list[str] = []
    for path, message in _decoded(reference_dir):
        if not isinstance(message, GeneralCiphering):
            continue
        frame = message.general_signing
        totals[frame.cra_flag] += 1
        pairs = [(k, p) for k, p in _mac_key_pairs(keystore, frame) if k and p]
        if not pairs:
            unverifiable.append(path.name)
            continue
        assert any(verify_mac(message, private_key=k, peer_public_key=p) for k, p in pairs), (
            path.name
        )
        verified[frame.cra_flag] += 1
    print(f"\nMACs verified (CRA: verified/total): {dict(verified)} / {dict(totals)}")
    assert all(name.startswith(("PCS01", "PCS02")) for name in unverifiable), unverifiable
    assert sum(verified.values()) >= 510


def test_every_signature_verifies(reference_dir: Path) -> None:
    keystore = reference_dir / "gbcs" / "keystore"
    count = 0
    for path, message in _decoded(reference_dir):
        frame = _general_signing(message)
        if frame.signature is None:
            continue
        public = _public(keystore, f"{frame.originator_title.hex()}-ds")
        assert public is not None, path.name
        assert verify_frame_signature(frame, public), path.name
        count += 1
    print(f"\nECDSA signatures verified: {count}")
    assert count >= 310


def _content_blocks(frame: GeneralSigning) -> list[bytes]:
    """Encrypted-content blocks: after a DLMS octet-string header or a 2-byte ZigBee length."""
    blocks = []
    payload = frame.payload
    start = payload.find(CONTENT_HEADER)
    while start >= 0:
        if payload[start - 2] == DataType.OCTET_STRING:
            length = payload[start - 1]
        elif payload[start - 3 : start - 1] == b"\x09\x81":
            length = payload[start - 1]
        else:
            length = int.from_bytes(payload[start - 2 : start], "big")
        blocks.append(payload[start : start + length])
        start = payload.find(CONTENT_HEADER, start + 1)
    return blocks


def test_every_encrypted_content_block_decrypts(reference_dir: Path) -> None:
    keystore = reference_dir / "gbcs" / "keystore"
    count = 0
    for path, message in _decoded(reference_dir):
        frame = _general_signing(message)
        for block in _content_blocks(frame):
            context = content_context(frame)
            private = _private(keystore, f"{context.recipient_title.hex()}-ka")
            public = _public(keystore, f"{context.device_title.hex()}-ka")
            assert private is not None and public is not None, path.name
            plaintext = decrypt_content(
                block,
                device_title=context.device_title,
                counter=context.counter,
                recipient_title=context.recipient_title,
                private_key=private,
                peer_public_key=public,
            )
            if frame.payload[0] in DLMS_TAGS:
                assert Data.decode(plaintext).encode() == plaintext, path.name
            count += 1
    print(f"\nencrypted content blocks decrypted: {count}")
    assert count >= 28


def test_seal_and_sign_with_fresh_keys_verify() -> None:
    device = ec.generate_private_key(ec.SECP256R1())
    acb = ec.generate_private_key(ec.SECP256R1())
    message = decode_message(ECS17B_COMMAND)
    assert isinstance(message, GeneralCiphering)
    sealed = seal(message.general_signing, private_key=acb, peer_public_key=device.public_key())
    assert verify_mac(sealed, private_key=device, peer_public_key=acb.public_key())
    signed = sign_frame(message.general_signing, acb)
    assert signed.signature_field == "signed"
    assert verify_frame_signature(signed, acb.public_key())
    assert decode_message(signed.encode()) == signed
    assert not ecdsa_verify_raw(acb.public_key(), b"other", ecdsa_sign_raw(acb, b"data"))


def test_parse_hex_or_base64_accepts_both() -> None:
    assert parse_hex_or_base64("DD 00\n0a") == b"\xdd\x00\x0a"
    assert parse_hex_or_base64("3QAK") == b"\xdd\x00\x0a"
    with pytest.raises(GbcsError):
        parse_hex_or_base64("not *base64*")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x42", "unknown GBCS APDU tag"),
        (ECS17B_COMMAND[:-1], "truncated"),
        (ECS17B_COMMAND + b"\x00", "trailing"),
        (ECS17B_COMMAND[:7] + b"\x82\x00\x95" + ECS17B_COMMAND[9:], "non-minimal"),
    ],
)
def test_malformed_frames_raise_gbcs_error(data: bytes, reason: str) -> None:
    with pytest.raises(GbcsError, match=reason):
        decode_message(data)


def _decode_everything(data: bytes) -> None:
    message = decode_message(data)
    assert message.encode() == data
    payload = _general_signing(message).payload
    if payload[:1] and payload[0] in DLMS_TAGS:
        assert decode_apdu(payload).encode() == payload


@given(st.binary(max_size=400))
def test_random_bytes_only_raise_gbcs_error(data: bytes) -> None:
    try:
        _decode_everything(data)
    except GbcsError:
        pass


@given(st.integers(min_value=0, max_value=len(ECS17B_COMMAND) - 1))
def test_truncated_frame_only_raises_gbcs_error(cut: int) -> None:
    with pytest.raises(GbcsError):
        decode_message(ECS17B_COMMAND[:cut])


@given(st.lists(st.integers(min_value=0, max_value=len(ECS17B_COMMAND) * 8 - 1), max_size=8))
def test_bit_flipped_frame_only_raises_gbcs_error(flips: list[int]) -> None:
    data = bytearray(ECS17B_COMMAND)
    for bit in flips:
        data[bit // 8] ^= 1 << (bit % 8)
    try:
        _decode_everything(bytes(data))
    except GbcsError:
        pass


@given(st.binary(max_size=300))
def test_random_dlms_payloads_only_raise_gbcs_error(tail: bytes) -> None:
    for tag in DLMS_TAGS:
        try:
            payload = bytes([tag]) + tail
            assert decode_apdu(payload).encode() == payload
        except GbcsError:
            pass


@given(
    st.integers(min_value=0, max_value=len(ECS17B_COMMAND) - 1),
    st.binary(max_size=6),
    st.integers(min_value=0, max_value=6),
)
def test_spliced_frame_only_raises_gbcs_error(at: int, insert: bytes, delete: int) -> None:
    try:
        _decode_everything(ECS17B_COMMAND[:at] + insert + ECS17B_COMMAND[at + delete :])
    except GbcsError:
        pass


@given(st.binary(max_size=12), st.binary(max_size=40))
def test_compact_array_elements_only_raise_gbcs_error(description: bytes, contents: bytes) -> None:
    payload = b"\x13" + description + bytes([len(contents)]) + contents
    try:
        value = Data.decode(payload)
        assert isinstance(value.value, CompactArray)
        value.value.elements()
    except GbcsError:
        pass


def test_compact_array_that_expands_without_bytes_is_refused() -> None:
    # array of 65535 arrays of 65535 nulls, with one content byte
    value = Data.decode(bytes.fromhex("13 01 FFFF 01 FFFF 00 01 00".replace(" ", "")))
    assert isinstance(value.value, CompactArray)
    with pytest.raises(GbcsError, match="expands"):
        value.value.elements()


def test_compact_arrays_in_the_vectors_unpack(reference_dir: Path) -> None:
    unpacked = 0
    for path, message in _decoded(reference_dir):
        payload = _general_signing(message).payload
        if payload[0] != 0xDA:
            continue
        response = decode_apdu(payload)
        assert isinstance(response, AccessResponse)
        pending = list(response.data)
        while pending:
            item = pending.pop()
            if isinstance(item.value, CompactArray):
                assert item.value.elements(), path.name
                unpacked += 1
            elif isinstance(item.value, tuple):
                pending.extend(item.value)
    assert unpacked >= 10
