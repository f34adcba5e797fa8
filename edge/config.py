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
      delivery: pipeline | broker = pipeline  # keep a message until the bridge confirms Kafka has
                                      # it (contract.acks), or only until the broker's PUBACK
      confirm_timeout_s: float = 20   # re-send what is unconfirmed after this (doubling, <= 300 s)
      max_unconfirmed: int = 10000    # sent but unconfirmed at most; the rest waits in the outbox
    outbox: {path: str, max_messages: int = 100000, when_full: drop_oldest | reject_new}
    vehicles:                         # registry, optional
      - {plate, tare_kg, rated_gross_kg, category, origin}   # tare_kg omitted: weighed in and out
    household_key_file: str | null   # HMAC key for station household pseudonyms (never commit one) ...
    household_key_env: str | null    # ... or an env var; stations inherit it unless they set their own
    status_interval_s: float = 60    # device_status heartbeat per device and for the agent itself
    device_backoff_max_s: float = 30 # a failing device driver is restarted with 1 s .. this backoff
    clock: {max_skew_s: float = 300, not_before: "2024-01-01T00:00:00Z"}
    devices:                          # a list tagged by `kind` (edge/devices/registry.py); `kind`
                                      # defaults to weighbridge; each kind's keys are its driver's
                                      # config struct (DeviceSpec subclass), e.g.:
      - id: str                       # contract Ident, unique in the site
        kind: weighbridge             # edge.devices.weighbridge.workflow.WeighbridgeDevice
        port: str                     # indicator serial port (a pty symlink in the simulator)
        anpr_port: str | null         # plate camera line port: `PLATE <plate>\\r\\n`, UTF-8
        anpr_http: {host: 0.0.0.0, port: 8080, path: /, max_body_bytes: 4194304} | null
                                      # the server plate cameras push AlarmInfoPlate JSON to
        baudrate: 9600, parity: N|E|O, bytesize: 7|8, stopbits: 1|2
        format: toledo | xk3190 | st_gs | custom
        frame: {...} | null           # with custom only: frames.FrameSpec (start, end, length,
                                      # weight {offset, length}, sign_at, decimals[_at], checksum)
        checksum: true                # Toledo checksum byte present
        unit: kg | t | lb = kg        # the unit the indicator must report (Toledo: a frame in
                                      # another unit is a device error, never rescaled); the
                                      # unit of an XK3190's weights (its frame carries none)
        division_kg: 20
        occupied_kg: 500
        stable: {tolerance_kg: 20, hold_s: 1.0}
        double_weigh_window_s: 600
        tare_deviation_kg: 500        # |measured - registered| above this flags tare_deviation
        plate_window_s: 120           # a plate read this long before the weight settled still counts
        two_pass: unregistered | always | never   # who is weighed in and out (workflow.py)
        pass_expiry_s: 14400          # a first pass not weighed out by then: pass_expired
        remote_jump_kg: 200, remote_jump_within_s: 0.5   # a settled step this big, this fast
      - id: str
        kind: sorting_station         # every key of edge.devices.sorting_station.station.SortingStationConfig
        community_id: str             # but site_id (taken from the site), e.g. transport: tcp|rtu,
        host: str, port: int          # serial_port, unit_id, poll_s, fill_step_pct, heartbeat_s
        profile: wastestream-v1       # the station model's register map: a vendor profile's name
                                      # (edge/devices/profiles/vendors/sorting_station/) or file path
      - id: str
        kind: truck                   # every key of edge.devices.truck.terminal.TruckTerminalConfig
        plate: str                    # but site_id, e.g. gps_port, io_transport, io_host, io_port,
        gps_port: str                 # io_unit_id, io_poll_s, report_interval_s, load_step_kg
        io_profile: wastestream-v1    # the I/O module's map (edge/devices/profiles/vendors/truck_io/)
      - id: str
        kind: jt808                   # a JT/T 808 terminal: edge.devices.jt808.driver.Jt808Config
        phone: str, plate: str        # but site_id; full_load_kg defaults to the plate's vehicle entry
        profile: str                  # (rated_gross_kg - tare_kg); listen, report_interval_s, idle_s

Relative paths are resolved against the current directory, like every other CLI path.
A bad file raises ConfigError whose message names the key path, e.g. `$.devices[0].baudrate`.
"""

from __future__ import annotations

import functools
import operator
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import yaml

from contract.events import Ident
from edge.devices.base import DeviceSpec, Vehicle
from edge.devices.registry import DEFAULT_KIND, DRIVERS


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
    delivery: Literal["pipeline", "broker"] = "pipeline"
    confirm_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    max_unconfirmed: Annotated[int, msgspec.Meta(ge=1)] = 10_000

    def password(self) -> str | None:
        """Read the password from its file or env var at connect time (never stored in config)."""
        if self.password_file:
            try:
                lines = Path(self.password_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {exc}") from None
            if not lines or not lines[0].strip():
                raise ConfigError(f"mqtt.password_file: {self.password_file} is empty")
            return lines[0].strip()
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


if TYPE_CHECKING:
    DeviceConfig = DeviceSpec
else:  # msgspec decodes the union of every registered kind's config, tagged by `kind`
    DeviceConfig = functools.reduce(operator.or_, (d.config for d in DRIVERS.values()))
"""Tagged by `kind`; every device config has `id` and a class-level `kind`."""


class ClockConfig(Base, frozen=True):
    """Bounds for device timestamps (see edge/clock.py)."""

    max_skew_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    not_before: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    """Earlier timestamps mean an unset clock (a box without RTC battery boots in 1970)."""


class SiteConfig(Base, frozen=True):
    site_id: Ident
    outbox: OutboxConfig
    devices: Annotated[list[DeviceConfig], msgspec.Meta(min_length=1)]
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    vehicles: list[Vehicle] = msgspec.field(default_factory=list)
    household_key_file: str | None = None
    household_key_env: str | None = None
    status_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    device_backoff_max_s: Annotated[float, msgspec.Meta(ge=1)] = 30.0
    clock: ClockConfig = msgspec.field(default_factory=ClockConfig)

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


def _fill_devices(data: object) -> object:
    """Defaults that depend on the site: `kind` (DEFAULT_KIND), and what each kind's driver takes
    from the site (`site_id`, the household key source...; `Driver.site_defaults`).

    Works on a copy of the raw mapping so that key paths in errors stay those of the file.
    """
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        return data
    devices: list[Any] = []
    for i, raw in enumerate(data["devices"]):
        device = {"kind": DEFAULT_KIND, **raw} if isinstance(raw, dict) else raw
        kind = device.get("kind") if isinstance(device, dict) else None
        driver = DRIVERS.get(kind) if isinstance(kind, str) else None
        devices.append(device if driver is None else driver.site_defaults(device, data, f"$.devices[{i}]"))
    return {**data, "devices": devices}


def parse_config(data: object, source: str = "<config>") -> SiteConfig:
    try:
        return msgspec.convert(_fill_devices(data), SiteConfig, strict=True)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
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
