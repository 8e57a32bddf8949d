from __future__ import annotations

from pathlib import Path

import pytest

from dccsim.config import CommonSettings, QueueType, UserGatewaySettings, WanSettings


def test_defaults_work_on_one_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCCSIM_AMQP_URL", raising=False)
    monkeypatch.delenv("DCCSIM_CONFIG", raising=False)
    s = UserGatewaySettings(home=Path("/nonexistent-home"))
    assert s.amqp_url.startswith("amqp://guest:guest@127.0.0.1:5672")
    assert s.queue_type is QueueType.CLASSIC
    assert s.keystore_dir == Path("/nonexistent-home/pki/keystore")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCCSIM_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("DCCSIM_USER_GATEWAY_PORT", "9443")
    s = UserGatewaySettings()
    assert s.queue_type is QueueType.QUORUM
    assert s.user_gateway_port == 9443


def test_toml_file_top_level_and_service_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "dccsim.toml"
    cfg.write_text(
        'amqp_url = "amqp://u:p@h:1/"\n[wan]\ndeadline_s = 3.5\n[user_gateway]\nport = 1\n'
    )
    monkeypatch.setenv("DCCSIM_CONFIG", str(cfg))
    wan = WanSettings()
    assert wan.amqp_url == "amqp://u:p@h:1/"
    assert wan.wan_deadline_s == 3.5
    assert UserGatewaySettings().user_gateway_port == 1


def test_environment_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "dccsim.toml"
    cfg.write_text('amqp_url = "amqp://from-file/"\n')
    monkeypatch.setenv("DCCSIM_CONFIG", str(cfg))
    monkeypatch.setenv("DCCSIM_AMQP_URL", "amqp://from-env/")
    assert CommonSettings().amqp_url == "amqp://from-env/"


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCCSIM_QUEUE_TYPE", "lossy")
    with pytest.raises(ValueError, match="queue_type"):
        CommonSettings()
