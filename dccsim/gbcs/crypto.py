"""GBCS cryptography: static ECDH, the KDF, the General Ciphering MAC, encrypted content, ECDSA.

All P-256. Follows PROTOCOL.md ("GBCS frames"): the KDF is the NIST concatenation KDF with one
SHA-256 round; MAC and content encryption are AES-128-GCM with 12-byte tags.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    """The static ECDH shared secret Z (the 32-byte x-coordinate), computed afresh."""
    return private_key.exchange(ec.ECDH(), peer_public_key)


DEFAULT_SHARED_SECRET_CACHE_SIZE = 100_000
_POINT_ENCODING = serialization.Encoding.X962
_POINT_FORMAT = serialization.PublicFormat.UncompressedPoint


class SharedSecretCache:
    """A bounded, thread-safe LRU of static ECDH shared secrets.

    GBCS key agreement is static-static: Z for one (private key, peer public key) pair never
    changes, so the ~70 µs point multiplication is needed once per pair, not once per message.
    Entries are keyed by the unordered pair of public points, the private key's and the
    peer's (so two objects holding the same key share an entry, both ends of one pair share
    it too, and a key object's lifetime does not matter). Encoding a point costs a few µs, so
    the encodings are memoised per key object; that memo holds the objects it has seen, which
    keeps their ``id`` from being reused.

    The lock only guards the dictionaries; ECDH itself runs outside it, so two threads that
    miss on the same pair at once both compute the same Z, which is harmless.
    """

    def __init__(self, maxsize: int = DEFAULT_SHARED_SECRET_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._secrets: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._points: OrderedDict[
            int, tuple[ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, bytes]
        ] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._secrets)

    def clear(self) -> None:
        """Forget every secret (e.g. after a key rotation) and reset the statistics."""
        with self._lock:
            self._secrets.clear()
            self._points.clear()
            self.hits = self.misses = 0

    def _point(self, key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
        with self._lock:
            memo = self._points.get(id(key))
            if memo is not None and memo[0] is key:
                self._points.move_to_end(id(key))
                return memo[1]
        public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        point = public.public_bytes(_POINT_ENCODING, _POINT_FORMAT)
        with self._lock:
            self._points[id(key)] = (key, point)
            self._points.move_to_end(id(key))
            while len(self._points) > 2 * self.maxsize:
                self._points.popitem(last=False)
        return point

    def shared_secret(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        peer_public_key: ec.EllipticCurvePublicKey,
    ) -> bytes:
        """Z for this pair: from the cache, or computed with :func:`ecdh_z` and remembered."""
        # Z(a, B) == Z(b, A): the unordered pair of points names the secret, so a process that
        # plays both ends (an emulated device and the ACB) computes it once.
        own, peer = self._point(private_key), self._point(peer_public_key)
        entry = (own, peer) if own <= peer else (peer, own)
        with self._lock:
            z = self._secrets.get(entry)
            if z is not None:
                self._secrets.move_to_end(entry)
                self.hits += 1
                return z
            self.misses += 1
        z = ecdh_z(private_key, peer_public_key)
        with self._lock:
            self._secrets[entry] = z
            while len(self._secrets) > self.maxsize:
                self._secrets.popitem(last=False)
        return z


#: The process-wide cache every MAC, encryption and decryption in this module goes through.
SHARED_SECRETS = SharedSecretCache()


def shared_secret(
    private_key: ec.EllipticCurvePrivateKey, peer_public_key: ec.EllipticCurvePublicKey
) -> bytes:
    """Z for this key pair, through the process-wide :data:`SHARED_SECRETS` cache."""
    return SHARED_SECRETS.shared_secret(private_key, peer_public_key)


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


_FULL_TAG_LENGTH = 16


def _gcm_encrypt(key: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    # AESGCM (one call into OpenSSL) is ~8x quicker than the streaming Cipher API; GBCS keeps
    # the first 12 bytes of the 16-byte tag, which is the same as asking GCM for a 12-byte tag.
    sealed = AESGCM(key).encrypt(iv, plaintext, aad)
    return sealed[:-_FULL_TAG_LENGTH], sealed[-_FULL_TAG_LENGTH:][:MAC_LENGTH]


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
        shared_secret(private_key, peer_public_key),
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
        shared_secret(private_key, peer_public_key),
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
