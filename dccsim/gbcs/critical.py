"""Critical commands: the Pre-Command, the User's Signed Pre-Command, and the ACB's wrapping.

The flow (PROTOCOL.md, DUIS "Flows"): for a critical Service Request (CV 4) the DCC builds a
**Pre-Command**, a General Signing APDU with no signature field at all, and returns it to the
User. The User signs it with its Digital Signing key and sends back the **Signed Pre-Command**
(CV 5): the same bytes followed by ``40`` and the 64-byte r‖s signature over
:meth:`GeneralSigning.signed_bytes`. The DCC checks the signature against the User's DS public
key and that the Signed Pre-Command is byte for byte the Pre-Command it issued apart from the
appended signature, then the ACB wraps it in General Ciphering with its MAC: that is the command
the device receives.

All pure functions: bytes and keys in, bytes out.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.crypto import seal, verify_frame_signature
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    SIGNATURE_LENGTH,
    GeneralSigning,
    decode_message,
)
from dccsim.gbcs.usecases import UseCase

_SIGNATURE_TRAILER = 1 + SIGNATURE_LENGTH  # 40 + r‖s


class SignedPreCommandError(GbcsError):
    """A Signed Pre-Command the DCC refuses to send; ``check`` names the failed check:
    ``"format"``, ``"mismatch"`` (not the Pre-Command issued) or ``"signature"``."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(reason)
        self.check = check


def pre_command_frame(
    use_case: UseCase,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    payload: bytes,
    other_info_extras: bytes = b"",
) -> GeneralSigning:
    """The Pre-Command for ``use_case``: General Signing, CRA 1, no date-time, no signature field.

    ``originator_title`` is the User who will sign it, ``counter`` the DUIS RequestID counter.
    """
    if not use_case.critical:
        raise ValueError(f"{use_case.name} is not a critical use case")
    return GeneralSigning(
        cra_flag=CRA_COMMAND,
        originator_counter=counter,
        originator_title=originator_title,
        recipient_title=device_title,
        date_time=None,
        message_code=use_case.message_code,
        other_info_extras=other_info_extras,
        payload=payload,
        signature=None,
        signature_field="absent",
    )


def build_pre_command(
    use_case: UseCase,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    payload: bytes,
    other_info_extras: bytes = b"",
) -> bytes:
    """The Pre-Command's bytes, as the DUIS ``PreCommand/GBCSPayload`` carries them."""
    return pre_command_frame(
        use_case,
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
        other_info_extras=other_info_extras,
    ).encode()


def verify_signed_pre_command(
    signed_pre_command: bytes,
    *,
    pre_command: bytes,
    user_ds_public: ec.EllipticCurvePublicKey,
) -> GeneralSigning:
    """Check a Signed Pre-Command against the Pre-Command issued and the User's DS key.

    Returns the decoded signed frame. Raises :class:`SignedPreCommandError` when it is not a
    signed General Signing APDU (``format``), is not ``pre_command`` plus ``40`` and 64
    signature bytes (``mismatch``), or the signature does not verify (``signature``).
    """
    if len(signed_pre_command) != len(pre_command) + _SIGNATURE_TRAILER or (
        signed_pre_command[: len(pre_command)] != pre_command
    ):
        raise SignedPreCommandError(
            "mismatch", "Signed Pre-Command differs from the Pre-Command issued"
        )
    try:
        frame = decode_message(signed_pre_command)
    except GbcsError as exc:
        raise SignedPreCommandError("format", f"Signed Pre-Command: {exc.reason}") from exc
    if not isinstance(frame, GeneralSigning) or frame.signature_field != "signed":
        raise SignedPreCommandError("format", "Signed Pre-Command is not a signed General Signing")
    if not verify_frame_signature(frame, user_ds_public):
        raise SignedPreCommandError("signature", "Signed Pre-Command signature does not verify")
    return frame


def wrap_command(
    signed: GeneralSigning,
    *,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """The critical command the device receives: ``signed`` in General Ciphering, ACB MAC'd."""
    if signed.signature_field != "signed":
        raise GbcsError("only a signed Pre-Command can be wrapped as a critical command")
    return seal(signed, private_key=acb_ka_private, peer_public_key=device_ka_public).encode()


def command_from_signed_pre_command(
    signed_pre_command: bytes,
    *,
    pre_command: bytes,
    user_ds_public: ec.EllipticCurvePublicKey,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
) -> bytes:
    """:func:`verify_signed_pre_command` then :func:`wrap_command`: CV 5's transformation."""
    frame = verify_signed_pre_command(
        signed_pre_command, pre_command=pre_command, user_ds_public=user_ds_public
    )
    return wrap_command(frame, acb_ka_private=acb_ka_private, device_ka_public=device_ka_public)
