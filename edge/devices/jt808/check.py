"""One wire chunk through the whole decoder, for the bad-input corpus (tests/corpus/jt808/).

`check_wire` unframes the bytes and decodes the body of the first packet: it returns the first
`BadPacket` or `BodyError` (both carry the `reason` the gateway logs), else the decoded object.
"""

from __future__ import annotations

from edge.devices.jt808 import codec
from edge.devices.jt808 import messages as m

_BODIES = {
    m.LOCATION: lambda body, v19: m.decode_location(body),
    m.BATCH: lambda body, v19: m.decode_batch(body),
    m.REGISTER: m.decode_register,
    m.AUTHENTICATE: m.decode_auth,
}


def check_wire(data: bytes) -> object:
    unframer = codec.Unframer()
    items: list[codec.Packet | codec.BadPacket] = unframer.feed(data)
    tail = unframer.close()
    if tail is not None:
        items.append(tail)
    for item in items:
        if isinstance(item, codec.BadPacket):
            return item
    if not items:
        return codec.BadPacket("no packet: no 0x7e-delimited bytes")
    pkt = items[0]
    assert isinstance(pkt, codec.Packet)
    decode = _BODIES.get(pkt.header.msg_id)
    if decode is None:
        return pkt
    result = decode(pkt.body, pkt.header.is_2019)
    if isinstance(result, m.Batch) and result.errors:
        return m.BodyError("; ".join(result.errors))
    return result
