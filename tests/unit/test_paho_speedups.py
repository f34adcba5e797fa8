"""stream/paho_speedups.py: MQTT 5 properties read and written by paho exactly as without it."""

from __future__ import annotations

import subprocess
import sys

from stream.paho_speedups import CHECKED

SCRIPT = r"""
import sys
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
if sys.argv[1] == "patched":
    from stream import paho_speedups
    assert paho_speedups.apply()
out = []
p = Properties(PacketTypes.PUBLISH)
out.append(p.isEmpty())
p.ResponseTopic = "ws/ack/v1/lz"
p.UserProperty = ("a", "1")
p.UserProperty = ("b", "2")
p.MessageExpiryInterval = 60
packed = p.pack()
q = Properties(PacketTypes.PUBLISH)
q.unpack(packed)
out += [q.isEmpty(), q.ResponseTopic, q.UserProperty, q.MessageExpiryInterval, str(q), q.json(), packed.hex()]
q.clear()
out += [q.isEmpty(), hasattr(q, "ResponseTopic"), str(q)]
try:
    q.ReceiveMaximum = 10  # not a PUBLISH property
except Exception as exc:
    out.append(type(exc).__name__)
c = Properties(PacketTypes.CONNECT)
c.SessionExpiryInterval = 3600
c.ReceiveMaximum = 1000
out += [c.pack().hex(), len(Properties(PacketTypes.PUBLISH).names)]
print(repr(out))
"""


def run(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True,
                          text=True).stdout


def test_properties_behave_the_same_patched_and_unpatched() -> None:
    plain, patched = run("plain"), run("patched")
    assert "ws/ack/v1/lz" in plain and "MQTTException" in plain
    assert patched == plain


def test_the_installed_paho_is_one_it_was_checked_for() -> None:
    from importlib.metadata import version

    assert version("paho-mqtt").startswith(CHECKED)  # else apply() leaves paho alone: re-check it


def test_the_installed_paho_has_the_internals_the_loop_reads_and_writes_through() -> None:
    """Else stream.mqtt_loop falls back to paho's own reads (correct, about twice the bridge's CPU)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from stream.paho_speedups import direct_io_checked

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    assert direct_io_checked(client)
