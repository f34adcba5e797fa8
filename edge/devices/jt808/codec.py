"""JT/T 808 packets: 0x7E framing, 0x7D escapes, the XOR check code and both message headers.

A packet on the wire is ``7E | header | body | check | 7E`` where, after the check code is
computed over header and body, every 0x7E inside is sent as ``7D 02`` and every 0x7D as
``7D 01``. The header (big-endian) is::

    2013: msg id WORD, body properties WORD, terminal phone BCD[6],  serial WORD [, total WORD, index WORD]
    2019: msg id WORD, body properties WORD, protocol version BYTE, terminal phone BCD[10], serial WORD [...]

body properties: bits 0-9 body length, 10-12 encryption (bit 10: RSA), 13 sub-package (the total
and index fields follow), 14 version flag (1: the 2019 header), 15 reserved.

`Unframer` treats every 0x7E as a delimiter and each non-empty run between two as one candidate
packet, so a torn packet costs only itself (the next one still parses) and garbage between
packets is reported, never glued onto a good one. Every rejected candidate is a `BadPacket`
with the reason, so the caller logs it; nothing is dropped silently.
"""

from __future__ import annotations

import functools
import operator
import struct
from dataclasses import dataclass

FLAG = 0x7E
ESC = 0x7D
MAX_BODY = 0x3FF  # 10 bits of body length
MAX_UNESCAPED = 21 + MAX_BODY + 1  # the longest header, a full body and the check code
MAX_WIRE = 2 * MAX_UNESCAPED  # every byte escaped
HEADER_2013 = 12
HEADER_2019 = 17

_HEAD = struct.Struct(">HH")
_WORD = struct.Struct(">H")
_SUB = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded message header; `phone_bcd` is kept raw so a reply echoes it exactly."""

    msg_id: int
    serial: int
    phone: str
    """The terminal phone number without leading zeros (the registry's key)."""
    phone_bcd: bytes
    version: int | None = None
    """The 2019 protocol version byte; None for a 2013 header."""
    encryption: int = 0
    total: int = 0
    """Sub-package total (0: not sub-packaged)."""
    index: int = 0

    @property
    def is_2019(self) -> bool:
        return self.version is not None


@dataclass(frozen=True, slots=True)
class Packet:
    header: Header
    body: bytes


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A candidate packet that was discarded, and why; `raw` is what was on the wire (capped)."""

    reason: str
    raw: bytes = b""


def checksum(data: bytes) -> int:
    """The check code: every byte of header and body XORed together."""
    return functools.reduce(operator.xor, data, 0)


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes | None:
    """The raw bytes, or None when a 0x7D is not followed by 01 or 02."""
    if b"\x7d" not in data:
        return data
    if data.count(b"\x7d") != data.count(b"\x7d\x01") + data.count(b"\x7d\x02"):
        return None
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")  # this order: see tests


def bcd_digits(data: bytes) -> str | None:
    """The decimal digits of packed BCD, or None when a nibble is not 0-9."""
    text = data.hex()
    return text if text.isdigit() else None


def to_bcd(digits: str, size: int) -> bytes:
    """`digits` left-padded with zeros into `size` bytes of packed BCD."""
    if not digits.isdigit() or len(digits) > 2 * size:
        raise ValueError(f"{digits!r} is not at most {2 * size} decimal digits")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def parse(raw: bytes) -> Packet | BadPacket:
    """One unescaped-and-checked candidate (the bytes between two 0x7E) into a packet."""
    data = unescape(raw)
    if data is None:
        return BadPacket("bad escape: 0x7d not followed by 0x01 or 0x02", raw[:64])
    if len(data) < HEADER_2013 + 1:
        return BadPacket(f"torn packet: {len(data)} bytes, shorter than a header and check code", raw[:64])
    if checksum(data[:-1]) != data[-1]:
        return BadPacket(f"check code mismatch: got 0x{data[-1]:02x}, computed 0x{checksum(data[:-1]):02x}",
                         raw[:64])
    msg_id, props = _HEAD.unpack_from(data, 0)
    length, sub = props & MAX_BODY, props & 0x2000
    if props & 0x4000:
        off, version, phone_bcd = HEADER_2019, data[4], data[5:15]
    else:
        off, version, phone_bcd = HEADER_2013, None, data[4:10]
    if len(data) < off + 1 + (4 if sub else 0):
        return BadPacket(f"torn packet: {len(data)} bytes, shorter than its header", raw[:64])
    phone = bcd_digits(phone_bcd)
    if phone is None:
        return BadPacket(f"terminal phone is not BCD: {phone_bcd.hex()}", raw[:64])
    serial = _WORD.unpack_from(data, off - 2)[0]
    total = index = 0
    if sub:
        total, index = _SUB.unpack_from(data, off)
        off += 4
        if total < 1 or not 1 <= index <= total:
            return BadPacket(f"sub-package {index} of {total}", raw[:64])
    body = data[off:-1]
    if len(body) != length:
        return BadPacket(f"body length {len(body)} does not match the header's {length}", raw[:64])
    header = Header(msg_id, serial, phone.lstrip("0") or "0", bytes(phone_bcd), version,
                    (props >> 10) & 0x7, total, index)
    return Packet(header, body)


def encode(msg_id: int, body: bytes, *, phone_bcd: bytes, serial: int, version: int | None = None,
           total: int = 0, index: int = 0, encryption: int = 0) -> bytes:
    """A whole packet on the wire (flags, escapes, check code) for the given header fields."""
    if len(body) > MAX_BODY:
        raise ValueError(f"body of {len(body)} bytes: sub-package it (at most {MAX_BODY})")
    props = len(body) | (encryption & 0x7) << 10 | (0x2000 if total else 0)
    props |= 0x4000 if version is not None else 0
    head = _HEAD.pack(msg_id, props)
    if version is not None:
        head += bytes([version])
    head += phone_bcd + _WORD.pack(serial & 0xFFFF)
    if total:
        head += _SUB.pack(total, index)
    data = head + body
    return b"\x7e" + escape(data + bytes([checksum(data)])) + b"\x7e"


def reply_to(header: Header, msg_id: int, body: bytes, serial: int) -> bytes:
    """A platform message to the terminal of `header`, in the same header version and phone."""
    return encode(msg_id, body, phone_bcd=header.phone_bcd, serial=serial, version=header.version)


class Unframer:
    """Stream bytes in (TCP reads of any size), packets and bad candidates out, in order."""

    def __init__(self, max_wire: int = MAX_WIRE) -> None:
        self._buf = bytearray()
        self._max = max_wire
        self._skipping = False  # inside an oversize run: drop until the next 0x7E

    def feed(self, chunk: bytes) -> list[Packet | BadPacket]:
        out: list[Packet | BadPacket] = []
        buf = self._buf
        buf += chunk
        start = 0
        while True:
            end = buf.find(FLAG, start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end > start:
                out.append(parse(bytes(buf[start:end])))
            start = end + 1
        del buf[:start]
        if len(buf) > self._max:
            if not self._skipping:
                out.append(BadPacket(f"oversize: {len(buf)} bytes without a 0x7e (at most {self._max})",
                                     bytes(buf[:64])))
            self._skipping = True
            buf.clear()
        return out

    def close(self) -> BadPacket | None:
        """At end of stream: the torn tail, if any bytes were left without a closing 0x7E."""
        tail, self._buf = bytes(self._buf), bytearray()
        if tail and not self._skipping:
            return BadPacket(f"torn packet at end of stream: {len(tail)} bytes without a closing 0x7e",
                             tail[:64])
        return None
