"""GBCS cryptography: static ECDH, the KDF, the General Ciphering MAC, encrypted content, ECDSA.

All P-256. Follows PROTOCOL.md ("GBCS frames"): the KDF is the NIST concatenation KDF with one
SHA-256 round; MAC and content encryption are AES-128-GCM with 12-byte tags.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    MAC_LENGTH,
    SECURITY_HEADER,
    SIGNATURE_LENGTH,
    TITLE_LENGTH,
    GeneralCiphering,
    GeneralSigning,
)

KDF_ALGORITHM_ID = bytes.fromhex("60857406080300")
CRA_CONTENT_ENCRYPTION = 4  # stands in for the CRA flag in the content-encryption KDF
CONTENT_SECURITY_HEADER = bytes.fromhex("3100000000")  # encryption + authentication, IC 0
CONTENT_AAD = b"\x31"
MAC_AAD_PREFIX = SECURITY_HEADER + b"\x00"
_INVOCATION_COUNTER = bytes(4)


def ecdh_z(
    private_key: ec.EllipticCurvePrivateKey, peer_public_key: ec.EllipticCurvePublicKey
) -> bytes:
    """The static ECDH shared secret Z (the 32-byte x-coordinate)."""
    return private_key.exchange(ec.ECDH(), peer_public_key)


def kdf(
    z: bytes,
    *,
    originator_title: bytes,
    cra_flag: int,
    originator_counter: int,
    recipient_title: bytes,
) -> bytes:
    """The 16-byte AES key for one message (``cra_flag`` 4 for encrypted content)."""
    if len(originator_title) != TITLE_LENGTH or len(recipient_title) != TITLE_LENGTH:
        raise ValueError("system titles are 8 bytes")
    other_info = b"".join(
        (
            KDF_ALGORITHM_ID,
            originator_title,
            b"\x09",  # length of the transaction id that follows: CRA flag + counter
            bytes([cra_flag]),
            originator_counter.to_bytes(8, "big"),
            recipient_title,
        )
    )
    return hashlib.sha256(b"\x00\x00\x00\x01" + z + other_info).digest()[:16]


def _gcm_encrypt(key: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag[:MAC_LENGTH]


def compute_mac(key: bytes, originator_title: bytes, general_signing_apdu: bytes) -> bytes:
    """The 12-byte GBCS MAC: AES-GCM over no plaintext, AAD ``11 00000000 00`` ‖ the APDU."""
    _, tag = _gcm_encrypt(
        key, originator_title + _INVOCATION_COUNTER, MAC_AAD_PREFIX + general_signing_apdu, b""
    )
    return tag


def _mac_key(
    frame: GeneralSigning,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> bytes:
    return kdf(
        ecdh_z(private_key, peer_public_key),
        originator_title=frame.originator_title,
        cra_flag=frame.cra_flag,
        originator_counter=frame.originator_counter,
        recipient_title=frame.recipient_title,
    )


def seal(
    frame: GeneralSigning,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> GeneralCiphering:
    """Wrap ``frame`` in General Ciphering with its MAC.

    Commands: the ACB's KA private key and the device's KA public key. Responses and alerts:
    the device's KA private key and the recipient remote party's KA public key. A frame with an
    absent signature field gets the ``00`` (unsigned) marker, as every wrapped frame has one.
    """
    if frame.signature_field == "absent":
        frame = replace(frame, signature_field="unsigned")
    key = _mac_key(frame, private_key, peer_public_key)
    return GeneralCiphering(
        general_signing=frame, mac=compute_mac(key, frame.originator_title, frame.encode())
    )


def verify_mac(
    msg: GeneralCiphering,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> bool:
    """True when ``msg.mac`` is right for this key pair (either side of the ECDH)."""
    frame = msg.general_signing
    key = _mac_key(frame, private_key, peer_public_key)
    expected = compute_mac(key, frame.originator_title, msg.apdu_bytes())
    return hmac.compare_digest(expected, msg.mac)


def _content_key(
    device_title: bytes,
    counter: int,
    recipient_title: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> bytes:
    return kdf(
        ecdh_z(private_key, peer_public_key),
        originator_title=device_title,
        cra_flag=CRA_CONTENT_ENCRYPTION,
        originator_counter=counter,
        recipient_title=recipient_title,
    )


def encrypt_content(
    plaintext: bytes,
    *,
    device_title: bytes,
    counter: int,
    recipient_title: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> bytes:
    """The ``31 00000000 ‖ ciphertext ‖ tag12`` block for a device's encrypted response content.

    The device side passes its KA private key and the recipient's KA public key.
    """
    key = _content_key(device_title, counter, recipient_title, private_key, peer_public_key)
    ciphertext, tag = _gcm_encrypt(key, device_title + _INVOCATION_COUNTER, CONTENT_AAD, plaintext)
    return CONTENT_SECURITY_HEADER + ciphertext + tag


def decrypt_content(
    block: bytes,
    *,
    device_title: bytes,
    counter: int,
    recipient_title: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    peer_public_key: ec.EllipticCurvePublicKey,
) -> bytes:
    """The plaintext of an encrypted-content block; :class:`GbcsError` if it does not verify.

    The recipient side passes its KA private key and the device's KA public key.
    """
    if len(block) < len(CONTENT_SECURITY_HEADER) + MAC_LENGTH:
        raise GbcsError("encrypted content block too short")
    if block[: len(CONTENT_SECURITY_HEADER)] != CONTENT_SECURITY_HEADER:
        raise GbcsError(f"bad encrypted content header {block[:5].hex()}")
    key = _content_key(device_title, counter, recipient_title, private_key, peer_public_key)
    tag = block[-MAC_LENGTH:]
    decryptor = Cipher(
        algorithms.AES(key),
        modes.GCM(device_title + _INVOCATION_COUNTER, tag, min_tag_length=MAC_LENGTH),
    ).decryptor()
    decryptor.authenticate_additional_data(CONTENT_AAD)
    try:
        return decryptor.update(block[len(CONTENT_SECURITY_HEADER) : -MAC_LENGTH]) + (
            decryptor.finalize()
        )
    except InvalidTag as exc:
        raise GbcsError("encrypted content does not authenticate") from exc


ACB_EUI = bytes.fromhex("90B3D51F30000002")
_USER_EXTRAS_WITH_COUNTER = 24  # User EUI, User counter, one more counter


@dataclass(frozen=True)
class ContentContext:
    """The KDF inputs for a frame's encrypted content (the CRA flag is always 4)."""

    device_title: bytes
    counter: int
    recipient_title: bytes


def content_context(frame: GeneralSigning) -> ContentContext:
    """Who encrypts a frame's content for whom, under which counter.

    The device is the frame's originator (responses, alerts) or recipient (commands); the
    remote party the other title. When that is the ACB acting for a User, the recipient is the
    User named first in Other Information and, when the extras carry one more 8-byte counter
    after the User's (24 bytes), that counter (as the RTDS ECS21b URP vector shows).
    """
    if frame.cra_flag == CRA_COMMAND:
        device, remote = frame.recipient_title, frame.originator_title
    else:
        device, remote = frame.originator_title, frame.recipient_title
    counter = frame.originator_counter
    extras = frame.other_info_extras
    if remote == ACB_EUI and len(extras) >= 2 * TITLE_LENGTH:
        remote = extras[:TITLE_LENGTH]
        if len(extras) == _USER_EXTRAS_WITH_COUNTER:
            counter = int.from_bytes(extras[16:24], "big")
    return ContentContext(device, counter, remote)


def ecdsa_sign_raw(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 signature of ``data`` as 64 bytes r‖s."""
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ecdsa_verify_raw(public_key: ec.EllipticCurvePublicKey, data: bytes, sig: bytes) -> bool:
    """True when ``sig`` (64 bytes r‖s) is a valid signature of ``data``."""
    if len(sig) != SIGNATURE_LENGTH:
        return False
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def sign_frame(frame: GeneralSigning, private_key: ec.EllipticCurvePrivateKey) -> GeneralSigning:
    """``frame`` with ``40`` + the ECDSA signature of its :meth:`GeneralSigning.signed_bytes`."""
    signature = ecdsa_sign_raw(private_key, frame.signed_bytes())
    return replace(frame, signature=signature, signature_field="signed")


def verify_frame_signature(frame: GeneralSigning, public_key: ec.EllipticCurvePublicKey) -> bool:
    """True when ``frame`` is signed and its signature verifies with ``public_key``."""
    if frame.signature is None:
        return False
    return ecdsa_verify_raw(public_key, frame.signed_bytes(), frame.signature)
