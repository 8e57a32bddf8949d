"""DCC's own DUIS signing tool, as the npm package ``@smartdcc/duis-sign-wrap`` ships it.

The package is a Node wrapper (``signDuis`` / ``validateDuis``) around a Java tool, ``tool.jar``
(SmartDCCInnovation/dccboxed-signing-tool), which the wrapper runs once per call as
``java -cp tool.jar uk.co.smartdcc.boxed.xmldsig.<Sign|Validate> - [--preserveCounter]`` with the
document on stdin. The tool needs no key directory: the ZAZ1 test keys and certificates are
resources inside the jar. ``Sign`` picks the key by the RequestID's originator EUI (or takes
``signingcert.pem signingkey.key`` arguments after the file, the key PKCS#8 PEM) and, unless
``--preserveCounter``, rewrites the RequestID counter to the current time in ms. ``Validate``
checks the document against its bundled DUIS 5.1 schema, then the signature, finding the
certificate by the KeyInfo serial among its own (or taking ``signingcert.pem`` after the file).
Exit codes: 0 success, 1 environment, 2 application error, 3 missing key material, 10
validation failed (schema or signature; stderr says which).

A JVM start plus the tool's schema and key loading take seconds, so :class:`SigningTool` runs
many documents in one JVM (``DccToolBatch.java`` beside this file calls the tool's own entry
points for each) where ``javac`` is available, and one process per document otherwise.

The package is installed once into a cache outside the checkout (``$DCCSIM_NPM_CACHE``, default
``~/.cache/dccsim/npm``) with ``npm install --prefix``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "@smartdcc/duis-sign-wrap"
TOOL_PACKAGE = "uk.co.smartdcc.boxed.xmldsig"
BATCH_DRIVER = Path(__file__).with_name("DccToolBatch.java")
_INSTALL_TIMEOUT_S = 300
# Offline, npm's default retries take over a minute to give up.
_NPM_OPTIONS = ("--no-audit", "--no-fund", "--fetch-retries=1", "--fetch-retry-maxtimeout=10000")
# Short runs: the C1 compiler alone and the serial collector halve the CPU a batch takes.
_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
_RUN_TIMEOUT_S = 600

SUCCESS, MISSING_KEY, VALIDATION_FAILED = 0, 3, 10


class ToolUnavailable(RuntimeError):
    """npm, Java or the package is missing and cannot be had (the tests skip with this)."""


def cache_dir() -> Path:
    return Path(os.environ.get("DCCSIM_NPM_CACHE", Path.home() / ".cache" / "dccsim" / "npm"))


def package_dir(cache: Path) -> Path:
    return cache / "node_modules" / "@smartdcc" / "duis-sign-wrap"


def install(cache: Path) -> Path:
    """The package's folder in ``cache``, installing it with npm first if it is not there.

    Raises :class:`ToolUnavailable` when npm or Java is missing or the install fails (offline).
    """
    if shutil.which("java") is None:
        raise ToolUnavailable("Java is not installed (DCC's signing tool is a jar)")
    folder = package_dir(cache)
    if not (folder / "dist" / "tool.jar").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise ToolUnavailable(f"npm is not installed, and {PACKAGE} is not in {cache}")
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(cache), *_NPM_OPTIONS, PACKAGE],
                capture_output=True,
                text=True,
                timeout=_INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ToolUnavailable(f"npm install {PACKAGE} timed out (offline?)") from None
        if done.returncode != 0 or not (folder / "dist" / "tool.jar").is_file():
            said = [
                line.removeprefix("npm error").strip()
                for line in (done.stderr or done.stdout).splitlines()
                if line.removeprefix("npm error").strip()
            ]
            raise ToolUnavailable(
                f"npm install {PACKAGE} into {cache} failed (offline?): {'; '.join(said[:2])}"
            )
    return folder


@dataclass(frozen=True)
class ToolResult:
    """What one run of the tool on one document said."""

    exit_code: int
    output: bytes
    """stdout: the signed document (Sign), or the signed content without the signature
    (Validate)."""
    log: str
    """stderr: the tool's ``[I]``/``[W]``/``[E]`` lines."""

    @property
    def schema_ok(self) -> bool:
        """The document passed the tool's bundled DUIS 5.1 schema."""
        return "passed xsd validation" in self.log

    @property
    def signature_ok(self) -> bool:
        """Validate: the schema and the signature both passed."""
        return self.exit_code == SUCCESS and "passed signature check" in self.log

    def describe(self) -> str:
        return f"exit {self.exit_code}: {self.log.strip()}"


class SigningTool:
    """Runs the package's ``tool.jar`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.jar = folder / "dist" / "tool.jar"
        java = shutil.which("java")
        if java is None:
            raise ToolUnavailable("Java is not installed")
        self.java = java
        self.node = shutil.which("node")
        # Source-file mode (java File.java) compiles in memory: it needs the JDK's compiler.
        self.batched = shutil.which("javac") is not None

    def sign(
        self,
        documents: Sequence[bytes],
        *,
        preserve_counter: bool = True,
        credentials: tuple[Path, Path] | None = None,
    ) -> list[ToolResult]:
        """Sign each document (``credentials``: a certificate file and a PKCS#8 PEM key file,
        ``BEGIN PRIVATE KEY``, to sign with; else the tool's own key for the RequestID
        originator)."""
        options = ["--preserveCounter"] if preserve_counter else []
        if credentials is not None:
            options += [str(credentials[0]), str(credentials[1])]
        return self._run("Sign", documents, options)

    def validate(
        self, documents: Sequence[bytes], *, certificate: Path | None = None
    ) -> list[ToolResult]:
        """Validate each document (schema, then signature; ``certificate``: a PEM file to check
        the signature with instead of the tool's own certificate for the KeyInfo serial)."""
        return self._run("Validate", documents, [] if certificate is None else [str(certificate)])

    def _run(self, mode: str, documents: Sequence[bytes], options: list[str]) -> list[ToolResult]:
        with tempfile.TemporaryDirectory(prefix="dcc-tool-") as work:
            paths = []
            for i, document in enumerate(documents):
                path = Path(work) / f"{i:04d}.xml"
                path.write_bytes(document)
                paths.append(path)
            if self.batched and len(paths) > 1:
                self._run_batch(mode, paths, options)
            results = []
            for path in paths:
                rc = path.with_name(path.name + ".rc")
                if rc.is_file():
                    results.append(
                        ToolResult(
                            int(rc.read_text()),
                            path.with_name(path.name + ".out").read_bytes(),
                            path.with_name(path.name + ".err").read_text(errors="replace"),
                        )
                    )
                else:  # not batched, or the batch stopped early: one process for this one
                    results.append(self._run_one(mode, path, options))
            return results

    def _run_batch(self, mode: str, paths: list[Path], options: list[str]) -> None:
        command = [self.java, *_JVM_OPTIONS, "-cp", str(self.jar), str(BATCH_DRIVER), mode]
        command += [str(p) for p in paths] + ["--", *options]
        subprocess.run(command, capture_output=True, timeout=_RUN_TIMEOUT_S, check=False)

    def _run_one(self, mode: str, path: Path, options: list[str]) -> ToolResult:
        command = [self.java, *_JVM_OPTIONS, "-cp", str(self.jar), f"{TOOL_PACKAGE}.{mode}", "-"]
        command += options
        done = subprocess.run(
            command,
            input=path.read_bytes(),
            capture_output=True,
            timeout=_RUN_TIMEOUT_S,
            check=False,
        )
        return ToolResult(done.returncode, done.stdout, done.stderr.decode(errors="replace"))

    def through_js_api(self, calls: Sequence[tuple[str, bytes]]) -> list[tuple[bool, str]]:
        """Run ``(signDuis | validateDuis, document)`` calls through the package's JavaScript API,
        in order, in one Node process; each answers (resolved, output or error message).
        ``signDuis`` is called with ``preserveCounter: true``."""
        if self.node is None:
            raise ToolUnavailable("node is not installed (the package's JavaScript API)")
        script = """
const api = require(process.argv[1]);
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', async () => {
  const answers = [];
  for (const [fn, xml] of JSON.parse(input)) {
    try {
      answers.push([true, await api[fn]({ xml, preserveCounter: true })]);
    } catch (e) {
      answers.push([false, String(e && e.message ? e.message : e)]);
    }
  }
  process.stdout.write(JSON.stringify(answers));
});
"""
        payload = json.dumps([[fn, xml.decode()] for fn, xml in calls])
        # The wrapper starts java itself: the same JVM options reach it through the environment.
        env = {**os.environ, "JAVA_TOOL_OPTIONS": " ".join(_JVM_OPTIONS)}
        done = subprocess.run(
            [self.node, "-e", script, str(self.folder)],
            input=payload,
            env=env,
            capture_output=True,
            text=True,
            timeout=_RUN_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"node failed: {done.stderr.strip()}")
        return [(bool(ok), str(text)) for ok, text in json.loads(done.stdout)]
