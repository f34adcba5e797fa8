"""`alerts.yaml`: which alerts go to which push channel, and where the secrets come from.

Secrets (webhook secrets, robot URLs with their access tokens, MQTT passwords, the API token)
are never in this file: each is named by `*_env` (an environment variable) or `*_file` (a file,
e.g. a systemd credential or a Kubernetes secret mount), so the file can live in the repo.
A bad file fails `alerts serve` at start with the file name and the problem.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

from stream.alerting.kinds import SEVERITY_RANK
from stream.alertkinds import REGISTRY

log = logging.getLogger(__name__)

NonNeg = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
DEFAULT_API_PORT = 18600


class ConfigError(ValueError):
    """An unusable alerts config; the message names the file and the problem."""


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Secret(Base, frozen=True):
    """A value from the environment or a file (whitespace-stripped); `value` only for tests/dev."""

    env: str | None = None
    file: str | None = None
    value: str | None = None

    def resolve(self, what: str) -> str:
        if self.env:
            if self.env not in os.environ:
                raise ConfigError(f"{what}: environment variable {self.env} is not set")
            return os.environ[self.env].strip()
        if self.file:
            try:
                return Path(self.file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read {self.file}: {exc}") from None
        if self.value is not None:
            return self.value
        raise ConfigError(f"{what}: give env or file")


class Route(Base, frozen=True, tag_field="type"):
    """A channel's name and which alerts it receives: empty `kinds` = every kind.

    Every other channel field has a default (msgspec/mypy need that after these); the
    required ones are checked when the channel is built (`channels.build_channels`).
    """

    name: str
    kinds: list[str] = []
    min_severity: Literal["info", "warning", "critical"] = "info"
    when: Literal["raise", "escalate"] = "raise"
    """`escalate`: this channel (the supervisors' group) gets only the escalations of alerts not
    acknowledged within their deadline (`officer.ack_deadline_s`), not the alerts as raised."""

    def matches(self, kind: str, severity: str) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity]


class WebhookChannel(Route, frozen=True, tag="webhook"):
    url: str | None = None
    url_secret: Secret | None = None
    secret: Secret | None = None
    """Required: the HMAC key shared with the receiver."""
    timeout_s: Positive = 10.0


class DingTalkChannel(Route, frozen=True, tag="dingtalk"):
    url_secret: Secret | None = None
    """Required: `https://oapi.dingtalk.com/robot/send?access_token=...` (the token makes it a secret)."""
    secret: Secret | None = None
    """The robot's 加签 secret (`SEC...`); None if the robot uses keywords or an IP allow-list."""
    at_mobiles: list[str] = []
    timeout_s: Positive = 10.0


class WeComChannel(Route, frozen=True, tag="wecom"):
    url_secret: Secret | None = None
    """Required: `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`."""
    timeout_s: Positive = 10.0


class MqttChannel(Route, frozen=True, tag="mqtt"):
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "ws/v1/enforcement/alerts/{severity}"
    qos: Literal[0, 1, 2] = 1
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    timeout_s: Positive = 10.0


ChannelConfig = WebhookChannel | DingTalkChannel | WeComChannel | MqttChannel


class RetryConfig(Base, frozen=True):
    attempts: Annotated[int, msgspec.Meta(ge=1, le=50)] = 6
    initial_s: Positive = 2.0
    max_s: Positive = 300.0


class ApiConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_API_PORT
    token: Secret = Secret(env="WS_ALERTS_TOKEN")


class TileConfig(Base, frozen=True):
    """Raster map tiles under the alert page's vector map: 天地图 (`url` with `{tk}` and `key`) or a
    self-hosted server. Without it (or when tiles do not load) the page still draws the track,
    the points and the geofences as vectors."""

    url: str
    """Template with {z} {x} {y} (Web Mercator, XYZ order), optionally {s} and {tk}."""
    key: Secret | None = None
    subdomains: list[str] = []
    attribution: str = ""


Severity = Literal["info", "warning", "critical"]


class OfficerConfig(Base, frozen=True):
    """The officers' pages (stream/alerting/officer/): links, sessions, deadlines, tiles."""

    enabled: bool = True
    public_url: str = "http://127.0.0.1:18600"
    """How officers' phones reach this service (behind the city's TLS proxy): the base of push links."""
    link_ttl_s: Positive = 7 * 86400.0
    link_key: Secret | None = None
    """Default: a key made once and kept in the store's file."""
    session_ttl_s: Positive = 12 * 3600.0
    cookie_secure: bool = False
    """Set true behind TLS: the session cookie is then sent over HTTPS only."""
    login_max_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    login_window_s: Positive = 900.0
    ack_deadline_s: dict[Severity, Positive] = msgspec.field(
        default_factory=lambda: {"critical": 900.0, "warning": 4 * 3600.0})
    """An open alert of this severity not acknowledged within this time (since received) is escalated."""
    escalation_check_s: Positive = 15.0
    tiles: TileConfig | None = None


class AlertsConfig(Base, frozen=True):
    link_base_url: str = "http://127.0.0.1:18600/alerts/"
    """Officers' link to an alert when the officer pages are off (`officer.enabled: false`): this +
    alert_id (the city's own enforcement portal). With them on, pushes carry a signed link to the
    alert's page at `officer.public_url`."""
    cooldown_s: NonNeg | None = None
    """Default: `alerts.cooldown_s` of the city rules file ($WS_RULES)."""
    cooldown_by_kind: dict[str, NonNeg] = {}
    kafka_topic: str = "ws.alerts"
    kafka_group: str = "ws-alerts"
    db_path: str | None = None
    """Default: $WS_RUN_DIR/alerts/alerts.db."""
    influx: bool = True
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    retry: RetryConfig = RetryConfig()
    api: ApiConfig = ApiConfig()
    channels: list[ChannelConfig] = []
    officer: OfficerConfig = OfficerConfig()

    def routes(self, kind: str, severity: str) -> list[str]:
        return [c.name for c in self.channels if c.when == "raise" and c.matches(kind, severity)]

    def escalation_routes(self, kind: str, severity: str) -> list[str]:
        return [c.name for c in self.channels if c.when == "escalate" and c.matches(kind, severity)]


def parse_config(raw: object, source: str = "<config>") -> AlertsConfig:
    try:
        config = msgspec.convert(raw or {}, AlertsConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    names = [c.name for c in config.channels]
    if len(names) != len(set(names)):
        raise ConfigError(f"{source}: channel names must be unique")
    _warn_unknown_kinds(config, source)
    return config


def _warn_unknown_kinds(config: AlertsConfig, source: str) -> None:
    """A kind no agent can raise (a typo, or one this version lacks) would silently never match:
    say so at start. Only a warning: a config shared with another version must still load."""
    named = [("cooldown_by_kind", k) for k in config.cooldown_by_kind]
    named += [(f"channel {c.name} kinds", k) for c in config.channels for k in c.kinds]
    for where, kind in named:
        if kind not in REGISTRY:
            log.warning("%s: %s names alert kind %r, which is not registered (stream/alertkinds.py): "
                        "it never matches", source, where, kind)


def load_config(path: Path | str | None) -> AlertsConfig:
    """The file's config, or the defaults (no channels) when `path` is None."""
    if path is None:
        return parse_config({})
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(raw, str(path))
