"""Fixtures for the interoperability tests with DCC's signing tool: the tool itself (installed
once into a cache outside the checkout; the tests skip, saying why, without npm, Java or the
network) and a key store with DCC's ZAZ1 test set imported, as ``dccsim pki import-zaz1`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccsim.pki.external import import_zaz1
from dccsim.pki.keystore import KeyStore
from tests.interop.signing_tool import SigningTool, ToolUnavailable, cache_dir, install


@pytest.fixture(scope="session")
def signing_tool() -> SigningTool:
    try:
        return SigningTool(install(cache_dir()))
    except ToolUnavailable as why:
        pytest.skip(f"DCC's signing tool (@smartdcc/duis-sign-wrap) is unavailable: {why}")


@pytest.fixture(scope="session")
def zaz1_store(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A fresh key store holding the ZAZ1 set (folder and JSON), imported as by the CLI."""
    smki = reference_dir / "smki"
    store = KeyStore(tmp_path_factory.mktemp("zaz1") / "keystore")
    import_zaz1(store, smki / "zaz1", smki / "zaz1-keystore.json")
    return store
