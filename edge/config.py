"""Site config: one YAML file per edge agent, decoded strictly into typed structs.

Schema (every key not marked optional is required; unknown keys are errors)::

    site_id: str                      # contract Ident, e.g. lz-jingmai-incinerator
    mqtt:
      host: str = 127.0.0.1
      port: int = 18830
      username: str | null            # optional
      password_file: str | null       # a file holding the password (first line) ...
      password_env: str | null        # ... or the name of an env var; never inline
      tls: {ca_file: str, cert_file: str | null, key_file: str | null} | null
      keepalive: int = 30
      session_expiry_s: int = 86400   # persistent session (clean_start=False)
      max_inflight: int = 20
    outbox: {path: str, max_messages: int = 100000, when_full: drop_oldest | reject_new}
    vehicles:                         # registry, optional
      - {plate, tare_kg, rated_gross_kg, category, origin}
    devices:
      - id: str                       # contract Ident, unique in the site
        kind: weighbridge             # only kind implemented so far
        port: str                     # indicator serial port (a pty symlink in the simulator)
        anpr_port: str | null         # plate camera line port: `PLATE <plate>\\r\\n`, UTF-8
        baudrate: 9600, parity: N|E|O, bytesize: 7|8, stopbits: 1|2
        format: toledo | xk3190
        checksum: true                # Toledo checksum byte present
        division_kg: 20
        occupied_kg: 500
        stable: {tolerance_kg: 20, hold_s: 1.0}
        double_weigh_window_s: 600
        tare_deviation_kg: 500        # |measured - registered| above this flags tare_deviation

Relative paths are resolved against the current directory, like every other CLI path.
A bad file raises ConfigError whose message names the key path, e.g. `$.devices[0].baudrate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

from contract.events import Ident, WasteCategory

PositiveKg = Annotated[float, msgspec.Meta(gt=0)]


class ConfigError(ValueError):
    """A site config that cannot be used; the message names the file and key path."""


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class TlsConfig(Base, frozen=True):
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


class MqttConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 18830
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    keepalive: Annotated[int, msgspec.Meta(ge=5)] = 30
    session_expiry_s: Annotated[int, msgspec.Meta(ge=0)] = 86400
    max_inflight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20

    def password(self) -> str | None:
        """Read the password from its file or env var at connect time (never stored in config)."""
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").splitlines()[0].strip()
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"mqtt.password_env: environment variable {self.password_env} is not set")
            return value
        return None


class OutboxConfig(Base, frozen=True):
    path: str
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    when_full: Literal["drop_oldest", "reject_new"] = "drop_oldest"


class Vehicle(Base, frozen=True):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    tare_kg: Annotated[float, msgspec.Meta(ge=0)]
    rated_gross_kg: PositiveKg
    category: WasteCategory = WasteCategory.RESIDUAL
    origin: Ident = "unknown"


class StableConfig(Base, frozen=True):
    tolerance_kg: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    hold_s: PositiveKg = 1.0


class WeighbridgeDevice(Base, frozen=True):
    id: Ident
    port: str
    kind: Literal["weighbridge"] = "weighbridge"
    anpr_port: str | None = None
    baudrate: Annotated[int, msgspec.Meta(ge=50)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    format: Literal["toledo", "xk3190"] = "toledo"
    checksum: bool = True
    division_kg: PositiveKg = 20.0
    occupied_kg: PositiveKg = 500.0
    stable: StableConfig = msgspec.field(default_factory=StableConfig)
    double_weigh_window_s: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    tare_deviation_kg: Annotated[float, msgspec.Meta(ge=0)] = 500.0


DeviceConfig = WeighbridgeDevice
"""Union of device kinds; grows a tagged union as kinds are added."""


class SiteConfig(Base, frozen=True):
    site_id: Ident
    outbox: OutboxConfig
    devices: Annotated[list[DeviceConfig], msgspec.Meta(min_length=1)]
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    vehicles: list[Vehicle] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        ids = [d.id for d in self.devices]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate device ids {sorted(dup)} - at `$.devices`")
        plates = [v.plate for v in self.vehicles]
        dup = {p for p in plates if plates.count(p) > 1}
        if dup:
            raise ValueError(f"duplicate plates {sorted(dup)} - at `$.vehicles`")

    def registry(self) -> dict[str, Vehicle]:
        return {v.plate: v for v in self.vehicles}


def parse_config(data: object, source: str = "<config>") -> SiteConfig:
    try:
        return msgspec.convert(data, SiteConfig, strict=True)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | os.PathLike[str]) -> SiteConfig:
    """Read and validate a site config; ConfigError names the file and the bad key path."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))
