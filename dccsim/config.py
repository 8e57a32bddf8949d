"""Typed settings, one object per service.

Values come from, highest priority first: keyword arguments (tests), environment variables
``DCCSIM_<FIELD>`` (for example ``DCCSIM_AMQP_URL``, ``DCCSIM_USER_GATEWAY_PORT``), then an optional
TOML file named by ``DCCSIM_CONFIG`` (or ``$DCCSIM_HOME/dccsim.toml``), then defaults that work on
one machine. In the TOML file, top-level keys apply to every service and a table named after the
service (``[user_gateway]``, ``[wan]`` ...) applies to that service only, with its field names
written without the service prefix::

    amqp_url = "amqp://guest:guest@127.0.0.1:5672/"
    [user_gateway]
    port = 8443
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class QueueType(StrEnum):
    CLASSIC = "classic"
    QUORUM = "quorum"


class LogFormat(StrEnum):
    JSON = "json"
    KEYVALUE = "kv"


def _config_file() -> Path | None:
    explicit = os.environ.get("DCCSIM_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"DCCSIM_CONFIG names {path}, which is not a file")
        return path
    home = Path(os.environ.get("DCCSIM_HOME", "var"))
    candidate = home / "dccsim.toml"
    return candidate if candidate.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the shared TOML file: top-level keys, then the service's own table."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = _config_file()
        if path is None:
            return
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
        section = getattr(settings_cls, "section", "")
        prefix = f"{section}_" if section else ""
        for key, value in raw.items():
            if not isinstance(value, dict):
                self._data[key] = value
        table = raw.get(section, {}) if section else {}
        if isinstance(table, dict):
            for key, value in table.items():
                name = prefix + key if prefix + key in settings_cls.model_fields else key
                self._data[name] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class EventLoop(StrEnum):
    """The asyncio event loop a service runs on."""

    UVLOOP = "uvloop"  # libuv's, in C: less CPU per message than the standard loop
    ASYNCIO = "asyncio"  # the standard library's


class CommonSettings(BaseSettings):
    """What every dccsim process needs."""

    model_config = SettingsConfigDict(env_prefix="DCCSIM_", extra="ignore")
    section: ClassVar[str] = ""

    home: Path = Field(default=Path("var"), description="where all state lives")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue_type: QueueType = QueueType.CLASSIC
    max_redeliveries: int = Field(default=3, ge=0, description="handler failures before the DLQ")
    rpc_timeout_s: float = Field(default=5.0, gt=0)
    prefetch: int = Field(default=64, ge=1)
    log_format: LogFormat = LogFormat.KEYVALUE
    log_level: str = "INFO"
    metrics_host: str = "127.0.0.1"
    timeline_events: bool = Field(
        default=True, description="publish each request's timeline.* events (the SSI portal)"
    )
    coalesce_writes: bool = Field(
        default=True, description="send what one event-loop turn writes to the broker at once"
    )
    coalesce_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=0.05,
        description="gather writes to the broker this long before sending (0: one loop turn); "
        "1 ms trades latency for throughput",
    )
    insecure_http: bool = Field(
        default=False, description="development only: plain HTTP instead of mutual TLS"
    )
    event_loop: EventLoop = Field(
        default=EventLoop.UVLOOP,
        description="uvloop (the default, where it is installed) or the standard asyncio loop",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    # Paths derived from home, so one variable moves everything.
    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def keystore_dir(self) -> Path:
        return self.home / "pki" / "keystore"

    @property
    def tls_dir(self) -> Path:
        return self.home / "pki" / "tls"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def sqlite_url(self, name: str) -> str:
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{name}.db').resolve()}"


class UserGatewaySettings(CommonSettings):
    section: ClassVar[str] = "user_gateway"
    user_gateway_host: str = "127.0.0.1"
    user_gateway_port: int = 8443
    user_gateway_metrics_port: int = 9101
    user_gateway_db_url: str | None = None
    delivery_retry_initial_s: float = Field(default=1.0, gt=0)
    delivery_retry_max_s: float = Field(default=60.0, gt=0)
    delivery_hold_s: float = Field(default=2 * 24 * 3600.0, gt=0, description="SEC: hold 2 days")
    delivery_concurrency: int = Field(default=32, ge=1)
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    duis_xsd: Path | None = Field(
        default=None,
        description="folder holding DUIS_Schema_V5.4.xsd: every request is also checked "
        "against the official schema (DCCSIM_DUIS_XSD)",
    )
    signature_validation_off: list[str] = Field(
        default_factory=list,
        description="DCC User IDs whose request XML signatures are not validated, like DCC "
        "Boxed's switch (development only; off for everyone by default)",
    )
    transform_rpc_timeout_s: float = Field(
        default=5.0, gt=0, description="CV 4: waiting for the Pre-Command from transform"
    )
    anomaly_window_s: float = Field(
        default=60.0, gt=0, description="anomaly detection: the sliding window, in seconds"
    )
    anomaly_thresholds: dict[str, int] = Field(
        default_factory=dict,
        description="anomaly detection: the most device Service Requests one User may have "
        'accepted per SRV variant in the window (key an SRV variant such as "4.1.1", or "*" '
        "for every SRV without its own entry); the excess is quarantined. Empty: off",
    )
    user_gateway_admin_host: str = "127.0.0.1"
    user_gateway_admin_port: int = Field(
        default=9111,
        ge=0,
        description="the User Gateway's localhost admin API (quarantine); 0 turns it off",
    )


class TransformSettings(CommonSettings):
    section: ClassVar[str] = "transform"
    transform_metrics_port: int = 9102


class InventorySettings(CommonSettings):
    section: ClassVar[str] = "inventory"
    inventory_metrics_port: int = 9103
    inventory_db_url: str | None = None
    inventory_initial_delivery_date: dt.date = Field(
        default=dt.date(2027, 1, 1), description="the first Communications Hub delivery month"
    )
    inventory_rollout_tolerance: float = Field(default=0.05, ge=0, lt=1)
    inventory_schedule_interval_s: float = Field(
        default=60.0, gt=0, description="how often the DSP scheduler looks for due runs"
    )
    inventory_schedule_clock_speed: float = Field(
        default=1.0,
        ge=1,
        description="testing: the DSP scheduler's clock runs this many times real time from start",
    )


class WanSettings(CommonSettings):
    section: ClassVar[str] = "wan"
    wan_metrics_port: int = 9104
    wan_gateway_host: str = "127.0.0.1"
    wan_gateway_port: int = 7443
    wan_deadline_s: float = Field(default=25.0, gt=0, description="CSP on-demand round trip")
    wan_connect_timeout_s: float = Field(default=5.0, gt=0)
    wan_gateways: dict[str, str] = Field(
        default_factory=dict, description='region or gateway name -> "host:port"'
    )


class TestingSettings(CommonSettings):
    __test__: ClassVar[bool] = False  # not a pytest class
    section: ClassVar[str] = "testing"
    testing_host: str = "127.0.0.1"
    testing_port: int = 8480
    testing_tls_port: int = Field(
        default=0,
        ge=0,
        description="also serve the API and SSI portal over TLS here (0: off); "
        "a DCCKI client certificate logs a participant in to the portal",
    )
    testing_metrics_port: int = 9105


class GatewaySettings(CommonSettings):
    section: ClassVar[str] = "gateway"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 7443
    gateway_metrics_port: int = 9106
    gateway_latency_ms: float = Field(default=0.0, ge=0, description="added per command")
    gateway_control_host: str = "127.0.0.1"
    gateway_control_port: int = 7480
    gateway_regions: list[str] = Field(default_factory=list)
    gateway_network_profile: str = Field(default="fast", description="fast or realistic")
    gateway_loss: float = Field(default=0.0, ge=0, le=1)
    gateway_network_file: str = Field(default="", description="JSON per-region overrides")
    gateway_network_seed: int = -1
    gateway_max_models: int = Field(default=20_000, ge=1)
    gateway_restore_alert_delay_s: float = Field(default=1.0, ge=0)
    gateway_state_file: str = Field(
        default="", description="device non-volatile state file (default under data/)"
    )
    gateway_estate_poll_s: float = Field(
        default=2.0, ge=0, description="seconds between looks for premises added to estate.json"
    )


class SmkiRepositorySettings(CommonSettings):
    section: ClassVar[str] = "smki_repository"
    smki_repository_host: str = "127.0.0.1"
    smki_repository_port: int = 8083
    smki_repository_metrics_port: int = 9107
