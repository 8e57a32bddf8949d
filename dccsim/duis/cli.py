"""``dccsim duis``: a participant's DUIS tools, the ``curl`` of DUIS.

    dccsim duis sign FILE [--as EUI | --participant DIR] [--target EUI] [--keep-counter] [-o OUT]
    dccsim duis verify FILE [--keystore DIR]
    dccsim duis send FILE [--as EUI | --participant DIR] [--target EUI] [--keep-counter]
                          [--url BASE] [--wait SECONDS] [--xml]

``sign`` rewrites the RequestID's originator to the participant's EUI-64 and its counter to a fresh
one, higher than any earlier (``--keep-counter`` keeps the file's), then signs the request with the
participant's XML-signing key, replacing any signature already there (a template's placeholder
one). Bundles live under ``$DCCSIM_HOME/participants/<EUI without dashes>/``; without ``--as`` or
``--participant`` the demo Supplier's is used.

``verify`` checks the enveloped signature against the certificate the KeyInfo serial names in
dccsim's key store (``$DCCSIM_HOME/pki/keystore`` unless ``--keystore``), prints the signer and
exits 1 when it does not verify.

``send`` signs as ``sign`` does and posts the request to this installation's web service for its
Command Variant (serviceS for 1, 3, 5, 7; serviceD for 2, 6, 8; serviceT for 4) over mutual TLS
with the bundle's DCCKI client certificate, and prints the synchronous answer as JSON. A critical
request (CV 4 answered I0 with a Pre-Command) is followed through: the Pre-Command is signed with
the participant's Digital Signing key and sent as CV 5 with the same RequestID. With ``--wait`` a
Receive Response Service is run for the participant (its URL registered for the time being) and
the asynchronous Response is printed, its GBCS payload decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from dccsim import config
from dccsim.duis.codes import RESPONSE_CODES, DuisError
from dccsim.duis.requestid import RequestId, format_eui, parse_eui
from dccsim.duis.xml import (
    SR_NS,
    DuisResponse,
    ServiceRequest,
    parse_response,
    parse_safely,
    parse_service_request,
    to_bytes,
)

EXIT_OK = 0
EXIT_FAILED = 1
"""The signature does not verify, or the DCC answered with an error code."""
EXIT_USAGE = 2
"""Unreadable input, an unknown participant, a request that does not parse."""
EXIT_TIMEOUT = 3
"""``send --wait``: no asynchronous Response within the time allowed."""
EXIT_TRANSPORT = 4
"""``send``: the web service could not be reached or answered other than HTTP 200."""

WEB_SERVICES: dict[int, str] = {
    1: "serviceS",
    3: "serviceS",
    5: "serviceS",
    7: "serviceS",
    2: "serviceD",
    6: "serviceD",
    8: "serviceD",
    4: "serviceT",
}
"""The DUIS web service each Command Variant is sent to."""

_SR = f"{{{SR_NS}}}"


class CliError(Exception):
    """A problem the command reports on stderr, with the exit code to end with."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _home() -> Path:
    return config.CommonSettings().home


def _eui(text: str) -> str:
    """An EUI-64 argument (dashes, colons or none) in DUIS form."""
    cleaned = text.replace("-", "").replace(":", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise argparse.ArgumentTypeError(f"{text!r} is not an EUI-64 (8 hex octets)")
    return format_eui(raw)


def _load_user(args: argparse.Namespace) -> Any:
    """The participant's :class:`~dccsim.testuser.TestUser` from ``--participant`` or ``--as``."""
    from dccsim.seed import DEMO_SUPPLIER_EUI
    from dccsim.testuser import TestUser, bundle_dir

    if args.participant:
        bundle = Path(args.participant)
    else:
        bundle = bundle_dir(_home(), args.as_eui or DEMO_SUPPLIER_EUI)
    if not (bundle / "participant.json").is_file():
        raise CliError(
            f"no participant bundle at {bundle} (run `dccsim seed` or `pki issue-party`)"
        )
    try:
        return TestUser.load(bundle)
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(f"cannot load the participant bundle at {bundle}: {exc}") from exc


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(str(exc)) from exc


@dataclass(frozen=True)
class Prepared:
    """A request rewritten for and signed by a participant."""

    request: ServiceRequest
    request_id: RequestId
    document: bytes


def prepare(
    data: bytes, user: Any, *, keep_counter: bool = False, target: str | None = None
) -> Prepared:
    """Rewrite ``data``'s RequestID for ``user`` (a TestUser) and sign it with its XML key.

    The originator becomes the participant's EUI-64 (in a PrecedingServiceRequestID too); the
    target becomes ``target`` when given; the counter a fresh one, greater than both the file's
    and any this participant used before (microseconds since the epoch), unless ``keep_counter``.
    Raises :class:`DuisError` when ``data`` is not a DUIS Request.
    """
    from dccsim.duis import xmldsig

    request = parse_service_request(data)
    root = request.root
    header = root.find(f"{_SR}Header")
    assert header is not None  # parse_service_request checked the structure
    rid_element = header.find(f"{_SR}RequestID")
    assert rid_element is not None
    old = request.request_id
    originator = parse_eui(user.eui)
    counter = old.counter
    if not keep_counter:
        user.counter = max(user.counter, time.time_ns() // 1000, old.counter)
        counter = user.next_request_id(user.eui).counter
    rid = RequestId(originator, parse_eui(target) if target else old.target, counter)
    rid_element.text = str(rid)
    preceding = header.find(f"{_SR}PrecedingServiceRequestID")
    if preceding is not None and request.preceding_request_id is not None:
        before = request.preceding_request_id
        preceding.text = str(RequestId(originator, before.target, before.counter))
    xmldsig.sign(root, private_key=user.xml_key, certificate=user.xml_cert)
    document = to_bytes(root)
    return Prepared(parse_service_request(document), rid, document)


def _write(document: bytes, out: str | None) -> None:
    if out and out != "-":
        Path(out).write_bytes(document)
    else:
        sys.stdout.buffer.write(document)
        if not document.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.buffer.flush()


def _run(handler: Any, args: argparse.Namespace, name: str) -> int:
    try:
        code: int = handler(args)
    except CliError as exc:
        print(f"dccsim duis {name}: {exc}", file=sys.stderr)
        return exc.code
    except DuisError as exc:
        print(f"dccsim duis {name}: {exc.code}: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    return code


# --------------------------------------------------------------------------- sign


def _sign(args: argparse.Namespace) -> int:
    user = _load_user(args)
    prepared = prepare(_read(args.file), user, keep_counter=args.keep_counter, target=args.target)
    _write(prepared.document, args.output)
    if args.output and args.output != "-":
        print(f"signed {prepared.request_id} as {user.user_id}: {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    return _run(_sign, args, "sign")


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Signer:
    eui: str | None
    role: int | None
    serial: int
    usage: str | None
    name: str | None


def verify_document(root: etree._Element, keystore: Path) -> Signer:
    """Verify ``root``'s signature with the certificate its serial names in ``keystore``.

    Raises :class:`DuisError` when it does not verify.
    """
    from dccsim.duis import xmldsig
    from dccsim.pki.keystore import Entry, KeyStore

    store = KeyStore(keystore)
    found: dict[int, Entry] = {}

    def find(serial: int) -> Any:
        entry = store.by_serial(serial)
        if entry is None:
            return None
        found[serial] = entry
        return entry.certificate

    certificate = xmldsig.verify(root, find_certificate=find)
    entry = found.get(certificate.serial_number)
    return Signer(
        eui=format_eui(entry.eui) if entry else None,
        role=entry.role if entry else None,
        serial=certificate.serial_number,
        usage=entry.usage.value if entry else None,
        name=entry.name if entry else None,
    )


def _keystore_dir(args: argparse.Namespace) -> Path:
    return Path(args.keystore) if args.keystore else config.CommonSettings().keystore_dir


def _verify(args: argparse.Namespace) -> int:
    root = parse_safely(_read(args.file))
    keystore = _keystore_dir(args)
    if not keystore.is_dir():
        raise CliError(f"key store folder {keystore} does not exist")
    try:
        signer = verify_document(root, keystore)
    except DuisError as exc:
        print(f"signature INVALID: {exc.reason}")
        return EXIT_FAILED
    role = f"{signer.role:02X}" if signer.role is not None else "?"
    print(
        f"signature OK: signer {signer.eui or '?'} role {role} serial {signer.serial} "
        f"({signer.serial:#x})" + (f" {signer.name}" if signer.name else "")
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    return _run(_verify, args, "verify")


# --------------------------------------------------------------------------- send


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        base: str = args.url.rstrip("/")
        return base.removesuffix("/api/v1")
    settings = config.UserGatewaySettings()
    scheme = "http" if settings.insecure_http else "https"
    return f"{scheme}://{settings.user_gateway_host}:{settings.user_gateway_port}"


def _signature_status(root: etree._Element | None, keystore: Path) -> str:
    if root is None or root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None:
        return "unsigned"
    if not keystore.is_dir():
        return "unchecked"
    try:
        signer = verify_document(root, keystore)
    except DuisError as exc:
        return f"INVALID ({exc.reason})"
    return f"verified ({signer.eui}, serial {signer.serial})"


def _decode_gbcs(payload: bytes, keystore: Path) -> Any:
    from dccsim.gbcs.cli import open_keystore
    from dccsim.gbcs.describe import describe
    from dccsim.gbcs.errors import GbcsError

    try:
        keys = open_keystore(keystore) if keystore.is_dir() else None
        return describe(payload, keys)
    except (GbcsError, OSError, ValueError) as exc:
        return {"ok": False, "error": str(exc), "hex": payload.hex().upper()}


def summarise(kind: str, response: DuisResponse, keystore: Path, **extra: Any) -> dict[str, Any]:
    """A DUIS answer as the JSON object ``send`` prints."""
    code = response.response_code
    known = RESPONSE_CODES.get(code)
    out: dict[str, Any] = {
        "answer": kind,
        **extra,
        "request_id": str(response.request_id) if response.request_id else None,
        "response_id": str(response.response_id) if response.response_id else None,
        "response_code": code,
        "meaning": known.name if known else None,
        "response_datetime": response.response_datetime,
        "service_reference_variant": response.service_reference_variant,
        "body": response.body_name,
        "signature": _signature_status(response.root, keystore),
    }
    if response.alert_code is not None:
        out["alert_code"] = response.alert_code
    if response.pre_command is not None:
        out["pre_command"] = {
            "gbcs_version": response.pre_command.gbcs_version,
            "gbcs_payload": response.pre_command.gbcs_payload.hex().upper(),
        }
    if response.gbcs_payload is not None:
        out["gbcs_payload"] = base64.b64encode(response.gbcs_payload).decode("ascii")
        out["gbcs"] = _decode_gbcs(response.gbcs_payload, keystore)
    return out


def _show(summary: dict[str, Any], raw: bytes, show_xml: bool) -> None:
    print(json.dumps(summary, indent=2), flush=True)
    if show_xml:
        print(raw.decode("utf-8", "replace"), flush=True)


async def _post(session: Any, url: str, document: bytes) -> tuple[bytes, DuisResponse]:
    import aiohttp

    try:
        async with session.post(
            url, data=document, headers={"Content-Type": "application/xml"}
        ) as resp:
            raw: bytes = await resp.read()
            if resp.status != 200:
                raise CliError(
                    f"{url} answered HTTP {resp.status} {resp.reason}: "
                    f"{raw[:300].decode('utf-8', 'replace')}",
                    EXIT_TRANSPORT,
                )
    except (aiohttp.ClientError, OSError) as exc:
        raise CliError(f"cannot reach {url}: {exc}", EXIT_TRANSPORT) from exc
    try:
        return raw, parse_response(raw)
    except DuisError as exc:
        raise CliError(
            f"{url} answered something that is not a DUIS Response: {exc.reason}"
        ) from exc


@contextlib.asynccontextmanager
async def _receiver(user: Any, home: Path, port: int) -> AsyncIterator[Any]:
    """Run the participant's Receive Response Service, registered for the time being."""
    from dccsim import participants
    from dccsim.testuser import ResponseReceiver

    current = participants.load(home).get(user.user_id)
    if current is None:
        raise CliError(f"{user.user_id} is not in {participants.registry_path(home)}")
    receiver = ResponseReceiver(user.receiver_ssl(), port=port)
    await receiver.start()
    participants.upsert(
        home,
        participants.Participant(current.user_id, current.eui, current.roles, receiver.url),
    )
    try:
        yield receiver
    finally:
        participants.upsert(home, current)
        await receiver.stop()


async def _send_async(args: argparse.Namespace, user: Any, prepared: Prepared) -> int:
    import aiohttp

    keystore = config.CommonSettings().keystore_dir
    base = _base_url(args)
    request = prepared.request
    rid = prepared.request_id
    cv = request.command_variant
    url = f"{base}/api/v1/{WEB_SERVICES[cv]}"
    ssl_context: ssl.SSLContext | bool = user.client_ssl() if base.startswith("https") else False
    async with contextlib.AsyncExitStack() as stack:
        receiver = None
        if args.wait is not None:
            receiver = await stack.enter_async_context(_receiver(user, _home(), args.receiver_port))
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context))
        )
        raw, answer = await _post(session, url, prepared.document)
        _show(
            summarise(
                "synchronous",
                answer,
                keystore,
                command_variant=cv,
                url=url,
                sent_request_id=str(rid),
            ),
            raw,
            args.xml,
        )
        if cv == 4 and answer.response_code == "I0" and answer.pre_command is not None:
            signed = user.sign_pre_command(answer.pre_command.gbcs_payload)
            document = user.signed_pre_command_request(
                request.service_reference_variant, rid, signed
            )
            url = f"{base}/api/v1/{WEB_SERVICES[5]}"
            raw, answer = await _post(session, url, document)
            _show(
                summarise("synchronous", answer, keystore, command_variant=5, url=url),
                raw,
                args.xml,
            )
        if not answer.response_code.startswith("I"):
            return EXIT_FAILED
        if receiver is None or answer.response_code != "I99":
            return EXIT_OK  # nothing asynchronous to wait for
        try:
            item = await receiver.wait_for(str(rid), timeout=args.wait)
        except TimeoutError:
            print(
                f"dccsim duis send: no asynchronous Response for {rid} within {args.wait} s",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        _show(summarise("asynchronous", item.response, keystore), item.raw, args.xml)
        return EXIT_OK if item.response.response_code.startswith("I") else EXIT_FAILED


def _send(args: argparse.Namespace) -> int:
    user = _load_user(args)
    prepared = prepare(_read(args.file), user, keep_counter=args.keep_counter, target=args.target)
    return asyncio.run(_send_async(args, user, prepared))


def cmd_send(args: argparse.Namespace) -> int:
    return _run(_send, args, "send")


# --------------------------------------------------------------------------- parser


def _participant_options(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--as",
        dest="as_eui",
        type=_eui,
        metavar="EUI",
        help="the participant's EUI-64: its bundle under $DCCSIM_HOME/participants/ "
        "(default: the demo Supplier)",
    )
    who.add_argument("--participant", metavar="DIR", help="the participant's bundle folder")
    parser.add_argument(
        "--target", type=_eui, metavar="EUI", help="also rewrite the RequestID's target"
    )
    parser.add_argument(
        "--keep-counter",
        action="store_true",
        help="keep the file's RequestID counter instead of a fresh, higher one",
    )


def register(sub: Any) -> None:
    """Add the ``duis`` command group to the dccsim CLI."""
    duis = sub.add_parser(
        "duis",
        help="DUIS requests: sign, verify and send them as a participant",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    duis_sub = duis.add_subparsers(dest="duis_command", required=True)

    sign = duis_sub.add_parser("sign", help="sign a DUIS request as a participant")
    sign.add_argument("file", metavar="FILE", help="the request, or - for stdin")
    _participant_options(sign)
    sign.add_argument("-o", "--output", metavar="OUT", help="write here (default: stdout)")
    sign.set_defaults(func=cmd_sign)

    verify = duis_sub.add_parser("verify", help="verify a DUIS document's XML signature")
    verify.add_argument("file", metavar="FILE", help="the document, or - for stdin")
    verify.add_argument(
        "--keystore", metavar="DIR", help="dccsim key store (default: $DCCSIM_HOME/pki/keystore)"
    )
    verify.set_defaults(func=cmd_verify)

    send = duis_sub.add_parser(
        "send", help="sign and send a DUIS request, follow it through, print the answers"
    )
    send.add_argument("file", metavar="FILE", help="the request, or - for stdin")
    _participant_options(send)
    send.add_argument(
        "--url", metavar="BASE", help="User Gateway base URL (default: this installation's)"
    )
    send.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="run a Receive Response Service and wait this long for the asynchronous Response",
    )
    send.add_argument(
        "--receiver-port", type=int, default=0, help="port of that service (default: any free)"
    )
    send.add_argument("--xml", action="store_true", help="print each answer's XML as well")
    send.set_defaults(func=cmd_send)
