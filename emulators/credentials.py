"""A meter's trust anchor cells and the use cases that replace them, device-independent.

GBCS gives the ESME and the GSME one use case for a remote party's credentials: CS02b
(6.15.1 Update Security Credentials (KRP), the Supplier or the Network Operator replacing its
own; 6.23 the Transitional CoS Party replacing the Supplier's) and, on an ESME only, CS02g (the
Load Controller's). :class:`TrustAnchorCells` is that one implementation: the cells (role, key
usage, cell usage -> the subject's EUI-64, subject key identifier and public key), the Root
cell a replacement certificate's path must lead to, the replacement now or at its execution
date-time (with its 0x8F66/0x8F67 outcome alert), and the remote party the device trusts once
a role's DS and KA cells hold a new subject. A model mixes it in and calls
``credentials_state`` / ``restore_credentials_state`` from its ``nonvolatile_state`` and
``credentials_due`` / ``run_due_credentials`` from its held work.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import der
from dccsim.gbcs.alerts import (
    ALERT_FUTURE_DATED_EXECUTED,
    ALERT_FUTURE_DATED_FAILED,
    MESSAGE_CODE_FUTURE_DATED_CS02B,
    MESSAGE_CODE_FUTURE_DATED_CS02G,
)
from dccsim.gbcs.commands import (
    ASN1_CANCELLATION_TIME,
    ASN1_LAYOUTS,
    KEY_USAGE_DIGITAL_SIGNATURE,
    KEY_USAGE_KEY_AGREEMENT,
    KRP_BY_USE_CASE,
    OTHER_SEQ_NUMBER_CHANGES,
    REPLACEMENT_OUTCOME,
    REPLACEMENTS,
    SEQ_NUMBER_CHANGES,
    SPECIALIST_FLOOR_SEQ_NUMBERS,
    asn1_time,
    parse_asn1_time,
)
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_CODE, USE_CASES_BY_NAME, build_signed_response
from emulators.device import (
    ALERT_SOURCE_NOT_AUTHORISED,
    DeviceRefusal,
    GbcsDevice,
    RemoteParty,
    on,
)

# CS02b/CS02g replacement outcome status codes (GBCS StatusCode)
STATUS_SUCCESS, STATUS_BAD_CERTIFICATE, STATUS_NO_TRUST_ANCHOR = 0, 5, 10
STATUS_TRUST_ANCHOR_NOT_FOUND = 25
X500_UNIQUE_IDENTIFIER = x509.ObjectIdentifier("2.5.4.45")  # the subject's EUI-64
CellKey = tuple[int, bytes, int]  # remote party role, key usage (BIT STRING content), cell usage
COMMAND_ACCEPTED = b"\x30\x02\x05\x00"  # a future-dated CS02b's answer: SEQUENCE { NULL }

# the credentials use cases by who may receive them: CS02b (its modes: Supplier by Supplier,
# Network Operator by itself, Supplier by the Transitional CoS) every meter; CS02g (the Load
# Controller's) an ESME only
CS02B_USE_CASES = tuple(name for name in KRP_BY_USE_CASE if name.startswith("CS02b"))
CS02G_USE_CASES = tuple(name for name in KRP_BY_USE_CASE if name.startswith("CS02g"))
# the future-dated outcome alerts' message codes, by the command's use case
CREDENTIALS_FUTURE_DATED_ALERTS = {
    **dict.fromkeys(CS02B_USE_CASES, MESSAGE_CODE_FUTURE_DATED_CS02B),
    **dict.fromkeys(CS02G_USE_CASES, MESSAGE_CODE_FUTURE_DATED_CS02G),
}


@dataclass(frozen=True)
class TrustAnchor:
    """One trust anchor cell of the meter: whose key (the subject's EUI-64, the certificate's
    subject key identifier) it holds for a remote party role and key usage."""

    role: int
    key_usage: bytes  # DER BIT STRING content: KEY_USAGE_DIGITAL_SIGNATURE or KEY_AGREEMENT
    subject_id: bytes
    subject_key_id: bytes
    public_key: ec.EllipticCurvePublicKey
    cell_usage: int = 0  # 0 management, 1 prepayment top-up

    @property
    def cell(self) -> CellKey:
        return (self.role, self.key_usage, self.cell_usage)

    def to_state(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "key_usage": self.key_usage,
            "subject_id": self.subject_id,
            "subject_key_id": self.subject_key_id,
            "public_key": self.public_key_der,
            "cell_usage": self.cell_usage,
        }

    @functools.cached_property
    def public_key_der(self) -> bytes:
        """The key as DER SubjectPublicKeyInfo (kept: anchors are shared by many meters)."""
        return self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TrustAnchor:
        key = _anchor_key(bytes(state["public_key"]))
        return cls(
            int(state["role"]),
            bytes(state["key_usage"]),
            bytes(state["subject_id"]),
            bytes(state["subject_key_id"]),
            key,
            int(state["cell_usage"]),
        )

    @classmethod
    def from_certificate(
        cls, role: int, cell_usage: int, certificate: x509.Certificate
    ) -> TrustAnchor:
        """The cell ``certificate`` fills; :class:`ValueError` when it is not a GBCS
        remote party certificate (EC key, subject EUI-64, subject key identifier, key usage)."""
        key = certificate.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC key")
        ids = certificate.subject.get_attributes_for_oid(X500_UNIQUE_IDENTIFIER)
        raw = ids[0].value if ids else b""
        subject = raw[1:] if isinstance(raw, bytes) and raw[:1] == b"\x00" else b""
        if len(subject) != 8:
            raise ValueError("no EUI-64 x500UniqueIdentifier in the subject")
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if usage.digital_signature and not usage.key_agreement:
            key_usage = KEY_USAGE_DIGITAL_SIGNATURE
        elif usage.key_agreement and not usage.digital_signature:
            key_usage = KEY_USAGE_KEY_AGREEMENT
        else:
            raise ValueError("key usage is neither digital signature nor key agreement")
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return cls(role, key_usage, subject, ski.digest, key, cell_usage)


@functools.lru_cache(maxsize=4096)
def _anchor_key(der_key: bytes) -> ec.EllipticCurvePublicKey:
    """A trust anchor's key from its DER (cached: restored meters share their parties' keys)."""
    key = serialization.load_der_public_key(der_key)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("trust anchor key is not EC")
    return key


# The RTDS ESME writes the lengths of the response, its report and the outcomes in the
# three-octet form (82 xx xx) even when one octet would do: paths of those elements
REPORT_LONG_LENGTHS = frozenset({(), (1,), (1, 3)})


def _long_form(
    element: der.Tlv, paths: frozenset[tuple[int, ...]], at: tuple[int, ...] = ()
) -> der.Tlv:
    """``element`` with the elements at ``paths`` (child indexes from the root) written with
    two length octets after ``82``."""
    children = tuple(_long_form(c, paths, (*at, i)) for i, c in enumerate(element.children))
    return der.Tlv(element.tag, element.content, children, 2 if at in paths else 0)


def _signed_by(certificate: x509.Certificate, issuer_key: ec.EllipticCurvePublicKey) -> bool:
    try:
        issuer_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        return False
    return True


class TrustAnchorCells(GbcsDevice):
    """A device's remote party trust anchor cells and CS02b (see the module docstring).

    Built empty (no cells, no Root): the model's constructor fills ``trust_anchors`` and
    ``root_public_key``; without them a credentials update has no cell to replace.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trust_anchors: dict[CellKey, TrustAnchor] = {}
        self.root_public_key: ec.EllipticCurvePublicKey | None = None
        # a future-dated credentials update: (its command, the execution date-time)
        self.pending_credentials: tuple[GeneralCiphering, datetime] | None = None

    def hold_trust_anchors(
        self, anchors: tuple[TrustAnchor, ...], root_public_key: ec.EllipticCurvePublicKey | None
    ) -> None:
        """Fill the cells (as installed) and the Root cell."""
        self.trust_anchors = {a.cell: a for a in anchors}
        self.root_public_key = root_public_key

    # -- non-volatile state ---------------------------------------------------------------------

    def credentials_state(self) -> dict[str, Any]:
        """The cells and a pending update, as msgpack-able values."""
        return {
            "trust_anchors": [a.to_state() for a in self.trust_anchors.values()],
            "pending_credentials": None
            if self.pending_credentials is None
            else {
                "command": self.pending_credentials[0].encode(),
                "at": self.pending_credentials[1].isoformat(),
            },
        }

    def restore_credentials_state(self, state: Mapping[str, Any]) -> None:
        """Undo ``credentials_state``; an absent key keeps what the model was built with."""
        if "trust_anchors" in state:
            held_before = {a.subject_id for a in self.trust_anchors.values()}
            anchors = (TrustAnchor.from_state(a) for a in state["trust_anchors"])
            self.trust_anchors = {a.cell: a for a in anchors}
            self._trust_the_cells(held_before)
        if "pending_credentials" in state:
            pending = state["pending_credentials"]
            self.pending_credentials = None
            if pending is not None:
                command = decode_message(bytes(pending["command"]))
                if isinstance(command, GeneralCiphering):
                    self.pending_credentials = (command, datetime.fromisoformat(pending["at"]))

    def _trust_the_cells(self, held_before: set[bytes]) -> None:
        """The remote parties the restored cells name: each role whose DS and KA cells hold
        one subject's keys makes that subject trusted with them, and a party that held cells
        before (``held_before``, as the meter was built) but holds none now is no longer
        trusted (its cells were replaced); parties that never held a cell stay as they are."""
        holders = {a.subject_id for a in self.trust_anchors.values()}
        for eui in held_before - holders:
            self.remote_parties.pop(eui, None)
        for role in {a.role for a in self.trust_anchors.values()}:
            ds = self.trust_anchors.get((role, KEY_USAGE_DIGITAL_SIGNATURE, 0))
            ka = self.trust_anchors.get((role, KEY_USAGE_KEY_AGREEMENT, 0))
            if ds is not None and ka is not None and ds.subject_id == ka.subject_id:
                self.remote_parties[ds.subject_id] = RemoteParty(
                    ds.subject_id, ka.public_key, ds.public_key
                )

    # -- held work ------------------------------------------------------------------------------

    def credentials_due(self) -> datetime | None:
        """When (on the device's clock) the held credentials update falls due."""
        return None if self.pending_credentials is None else self.pending_credentials[1]

    def run_due_credentials(self, now: datetime) -> None:
        """Carry out the held credentials update once the device clock reaches its time."""
        if self.pending_credentials is None:
            return
        command, when = self.pending_credentials
        if self.device_time(now) >= when:
            self.pending_credentials = None
            self._credentials_outcome(command, when, now)

    def _credentials_outcome(
        self, command: GeneralCiphering, when: datetime, now: datetime
    ) -> None:
        """Carry out a held credentials update and raise its outcome alert with the report:
        0x8F66 when every cell was replaced, 0x8F67 when one was not or the update was refused
        (its originator no longer holds the authorising cell)."""
        header = command.general_signing
        use_case = USE_CASES_BY_CODE[header.message_code].name
        replacement = KRP_BY_USE_CASE[use_case]
        try:
            report = self._replace_credentials(command, now)
            results = [
                der.decode_with(REPLACEMENT_OUTCOME, r) for r in report["replacement_results"]
            ]
            done = all(isinstance(r, Mapping) and r["status"] == STATUS_SUCCESS for r in results)
        except (DeviceRefusal, GbcsError, ValueError):
            report = {
                "originator_counter": header.originator_counter,
                "authorising_remote_party_role": replacement.mode,
                "seq_numbers": der.encode_with(SEQ_NUMBER_CHANGES, []),
                "replacement_results": [],
            }
            done = False
        code = ALERT_FUTURE_DATED_EXECUTED if done else ALERT_FUTURE_DATED_FAILED
        message_code = CREDENTIALS_FUTURE_DATED_ALERTS[use_case]
        payload = der.encode_with(
            der.ASN1_SCHEMAS[(message_code, 3)],
            {
                "alert_code": code,
                "execution_date_time": asn1_time(when),
                "credentials_replacement_report": report,
            },
        )
        counter = self.next_alert_counter(now)
        self._raise_alert(code, header.originator_title, counter, message_code, payload, now=now)

    # -- the use case ---------------------------------------------------------------------------

    @on(*(USE_CASES_BY_NAME[name] for name in CS02B_USE_CASES))
    def update_security_credentials(
        self, *, command: GeneralCiphering, now: datetime, **_: Any
    ) -> bytes:
        """CS02b / CS02g (6.15.1, 6.23): replace the remote party's trust anchor cells with the
        command's certificates, now (answer: the outcome of each replacement and the new
        seq numbers) or at its execution date-time (answer: command accepted); 9999-12-31
        cancels a pending one. Refused (no response) when the command's authorising cell is
        not the originator's or the counter inside is not the command's."""
        header = command.general_signing
        fields = self._credentials_fields(command)
        when = fields.get("execution_date_time")
        if when is None:
            payload = der.encode_with(
                der.ASN1_SCHEMAS[(header.message_code, 2)],
                {
                    "future_dated_or_null": None,
                    "credentials_replacement_report": self._replace_credentials(command, now),
                },
            )
            payload = _long_form(der.Tlv.decode(payload), REPORT_LONG_LENGTHS).encode()
        else:
            if when == ASN1_CANCELLATION_TIME:
                self.pending_credentials = None
            else:
                self.pending_credentials = (command, parse_asn1_time(str(when)))
            payload = COMMAND_ACCEPTED
        return build_signed_response(
            command=command,
            payload=payload,
            date_time=encode_date_time(self.device_time(now)),
            device_ds_private=self.ds_private_key,
        )

    def _credentials_fields(self, command: GeneralCiphering) -> Mapping[str, Any]:
        header = command.general_signing
        use_case = USE_CASES_BY_CODE[header.message_code]
        fields = der.decode_with(ASN1_LAYOUTS[use_case.name].schema, header.payload)
        assert isinstance(fields, Mapping)
        control = fields["authorising_remote_party_control"]
        replacement = KRP_BY_USE_CASE[use_case.name]
        if control["authorising_remote_party_role"] != replacement.mode:
            raise GbcsError(f"{use_case.name} carries another credentials replacement mode")
        if control.get("originator_counter") != header.originator_counter:
            raise GbcsError("credentials update counter is not the command's")
        cell = control.get("ta_cell_identifier") or {}
        authorising = self.trust_anchors.get(
            (replacement.authorising_role, KEY_USAGE_DIGITAL_SIGNATURE, 0)
        )
        if (
            cell.get("remote_party_role") != replacement.authorising_role
            or cell.get("key_usage") != KEY_USAGE_DIGITAL_SIGNATURE
            or authorising is None
            or authorising.subject_id != header.originator_title
        ):
            raise self._refuse(
                ALERT_SOURCE_NOT_AUTHORISED, "originator does not hold the authorising cell"
            )
        return fields

    def _replace_credentials(self, command: GeneralCiphering, now: datetime) -> dict[str, Any]:
        """Carry out a credentials update; its execution outcome (the report)."""
        header = command.general_signing
        fields = self._credentials_fields(command)
        control = fields["authorising_remote_party_control"]
        replacement = KRP_BY_USE_CASE[USE_CASES_BY_CODE[header.message_code].name]
        path = [
            x509.load_der_x509_certificate(c) for c in fields["certification_path_certificates"]
        ]
        time_checks = control.get("authorising_ta_cell_identifier", 0) == 0
        replacements = der.decode_with(REPLACEMENTS, fields["replacements"])
        assert isinstance(replacements, list)
        outcomes = []
        replaced: set[bytes] = set()  # subjects whose cells were replaced
        for item in replacements:
            cell = item["trust_anchor_cell"]
            key = (cell["remote_party_role"], cell["key_usage"], cell.get("cell_usage", 0))
            existing = self.trust_anchors.get(key)
            status, new = self._check_replacement(item["certificate"], key, path, time_checks, now)
            if existing is None:
                status, new = STATUS_TRUST_ANCHOR_NOT_FOUND, None
            if new is not None:
                assert existing is not None
                replaced.add(existing.subject_id)
                self.trust_anchors[key] = new
            kept = new or existing
            outcomes.append(
                {
                    "trust_anchor_cell": cell,
                    "status": status,
                    "existing_subject_unique_id": existing.subject_id if existing else b"",
                    "existing_subject_key_id": existing.subject_key_id if existing else b"",
                    "replacing_subject_unique_id": kept.subject_id if kept else b"",
                    "replacing_subject_key_id": kept.subject_key_id if kept else b"",
                }
            )
        changes = self._seq_number_changes(control, replacement.target_role)
        self._refresh_remote_parties(replacement.target_role, changes, replaced)
        return {
            "originator_counter": header.originator_counter,
            "authorising_remote_party_role": replacement.mode,
            "seq_numbers": der.encode_with(SEQ_NUMBER_CHANGES, changes),
            "replacement_results": [der.encode_with(REPLACEMENT_OUTCOME, o) for o in outcomes],
        }

    def _check_replacement(
        self,
        certificate_der: bytes,
        cell: CellKey,
        path: list[x509.Certificate],
        time_checks: bool,
        now: datetime,
    ) -> tuple[int, TrustAnchor | None]:
        """Certification path validation of one replacement certificate: issued by a path
        certificate that the Root cell signed, valid now (unless the time checks are
        disapplied), for the cell's key usage. (status, the new cell or None)."""
        if self.root_public_key is None:
            return STATUS_NO_TRUST_ANCHOR, None
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
            anchor = TrustAnchor.from_certificate(cell[0], cell[2], certificate)
        except ValueError:
            return STATUS_BAD_CERTIFICATE, None
        issuers = [c for c in path if c.subject == certificate.issuer]
        root = self.root_public_key
        chain_ok = any(
            isinstance(key := issuer.public_key(), ec.EllipticCurvePublicKey)
            and _signed_by(certificate, key)
            and _signed_by(issuer, root)
            for issuer in issuers
        )
        device_now = self.device_time(now)
        in_time = not time_checks or all(
            c.not_valid_before_utc <= device_now <= c.not_valid_after_utc
            for c in (certificate, *issuers)
        )
        if not chain_ok or not in_time or anchor.key_usage != cell[1]:
            return STATUS_BAD_CERTIFICATE, None
        return STATUS_SUCCESS, anchor

    def _seq_number_changes(
        self, control: Mapping[str, Any], target_role: int
    ) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        if "floor_seq_number" in control:
            change: dict[str, Any] = {
                "remote_party_role": target_role,
                "floor_seq_number": control["floor_seq_number"],
            }
            if "new_remote_party_seq_numbers" in control:
                specialist = der.decode_with(
                    SPECIALIST_FLOOR_SEQ_NUMBERS, control["new_remote_party_seq_numbers"]
                )
                change["specialist_floor_seq_numbers"] = specialist
            changes.append(change)
        if "new_seq_numbers" in control:
            other = der.decode_with(OTHER_SEQ_NUMBER_CHANGES, control["new_seq_numbers"])
            assert isinstance(other, list)
            changes.extend(dict(c) for c in other)
        return changes

    def _refresh_remote_parties(
        self, role: int, changes: list[dict[str, Any]], replaced: set[bytes]
    ) -> None:
        """The remote party now in ``role``'s cells is the one the meter trusts for that
        role (its DS and KA keys), in place of a ``replaced`` one that holds no cell any more;
        its counter floor is the update's floor seq number."""
        ds = self.trust_anchors.get((role, KEY_USAGE_DIGITAL_SIGNATURE, 0))
        ka = self.trust_anchors.get((role, KEY_USAGE_KEY_AGREEMENT, 0))
        if ds is None or ka is None or ds.subject_id != ka.subject_id:
            return
        holders = {a.subject_id for a in self.trust_anchors.values()}
        for eui in replaced - holders:
            self.remote_parties.pop(eui, None)
        self.remote_parties[ds.subject_id] = RemoteParty(
            ds.subject_id, ka.public_key, ds.public_key
        )
        for change in changes:
            if change["remote_party_role"] == role:
                last = self.last_counters.get(ds.subject_id, 0)
                self.last_counters[ds.subject_id] = max(last, int(change["floor_seq_number"]))


class LoadControllerCredentials(TrustAnchorCells):
    """The cells of a meter that also trusts a Load Controller (an ESME): CS02g, the Supplier
    replacing the Load Controller's credentials, besides CS02b."""

    @on(*(USE_CASES_BY_NAME[name] for name in CS02G_USE_CASES))
    def update_load_controller_credentials(
        self, *, command: GeneralCiphering, now: datetime, **_: Any
    ) -> bytes:
        """CS02g (6.15.1): as CS02b, for the Load Controller's cells."""
        return self.update_security_credentials(command=command, now=now)
