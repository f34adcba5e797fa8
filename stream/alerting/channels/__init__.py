"""Push channels, one module each; `build_channels` turns the config into live channels."""

from __future__ import annotations

from stream.alerting import config as cfg
from stream.alerting.channels.base import Channel, Delivery
from stream.alerting.channels.dingtalk import DingTalkChannel
from stream.alerting.channels.mqtt import MqttChannel
from stream.alerting.channels.webhook import WebhookChannel
from stream.alerting.channels.wecom import WeComChannel

__all__ = ["Channel", "Delivery", "build_channels"]


def _required(c: cfg.ChannelConfig, secret: cfg.Secret | None, what: str) -> str:
    if secret is None:
        raise cfg.ConfigError(f"channel {c.name}: {what} is required")
    return secret.resolve(f"channel {c.name} {what}")


def _url(c: cfg.WebhookChannel) -> str:
    if c.url_secret is not None:
        return _required(c, c.url_secret, "url_secret")
    if not c.url:
        raise cfg.ConfigError(f"channel {c.name}: give url or url_secret")
    return c.url


def build_channels(config: cfg.AlertsConfig) -> dict[str, Channel]:
    """Resolve secrets and build every configured channel; ConfigError if a secret is missing."""
    base = config.link_base_url
    out: dict[str, Channel] = {}
    for c in config.channels:
        channel: Channel
        if isinstance(c, cfg.WebhookChannel):
            channel = WebhookChannel(c.name, _url(c), _required(c, c.secret, "secret"), base,
                                     c.timeout_s)
        elif isinstance(c, cfg.DingTalkChannel):
            secret = c.secret.resolve(f"channel {c.name} secret") if c.secret else None
            channel = DingTalkChannel(c.name, _required(c, c.url_secret, "url_secret"), secret, base,
                                      c.at_mobiles, c.timeout_s)
        elif isinstance(c, cfg.WeComChannel):
            channel = WeComChannel(c.name, _required(c, c.url_secret, "url_secret"), base, c.timeout_s)
        else:
            password = c.password.resolve(f"channel {c.name} password") if c.password else None
            channel = MqttChannel(c.name, c.host, c.port, c.topic, base, qos=c.qos, username=c.username,
                                  password=password, tls=c.tls, timeout_s=c.timeout_s)
        out[c.name] = channel
    return out
