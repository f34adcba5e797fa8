"""Vendor profiles: the value decoder against IEEE-754 and two's-complement values written by hand,
and the profile checks a vendor's file meets (each refusal names what is wrong and where)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.devices.profiles import (
    KINDS,
    ProfileError,
    load_profile,
    parse_profile,
    profile_names,
    profile_path,
    profile_schema,
)
from edge.devices.profiles.fields import Block, Defaults, Field, FieldError, encode, place, raw, value
from edge.devices.profiles.truck_io import TruckIoProfile

REPO = Path(__file__).resolve().parents[2]


def read(registers: list[int], kind: str, word: str = "big", byte: str = "big", **extra: Any) -> Any:
    """Decode `registers` (from holding 0) as a field of `kind` in that order."""
    field = Field(address=0, type=kind, word_order=word, byte_order=byte, **extra)  # type: ignore[arg-type]
    placed = place("x", field, Defaults())
    return raw({"holding": Block(0, registers)}, placed)


# (value, its IEEE-754 single bits): from the standard's layout (sign, 8-bit exponent biased 127, 23-bit
# fraction), not from struct
F32 = [
    (1.0, 0x3F800000),
    (1.5, 0x3FC00000),  # 1.1b x 2^0
    (-2.25, 0xC0100000),  # -1.001b x 2^1
    (14.5, 0x41680000),  # 1.1101b x 2^3
    (100.0, 0x42C80000),
    (0.0, 0x00000000),
]


@pytest.mark.parametrize(("number", "bits"), F32)
def test_f32_in_each_word_and_byte_order(number: float, bits: int) -> None:
    a, b, c, d = bits.to_bytes(4, "big")  # ABCD: the bytes of the big-endian value
    assert read([a << 8 | b, c << 8 | d], "f32") == number  # ABCD (Modbus' order)
    assert read([c << 8 | d, a << 8 | b], "f32", word="little") == number  # CDAB
    assert read([b << 8 | a, d << 8 | c], "f32", byte="little") == number  # BADC
    assert read([d << 8 | c, b << 8 | a], "f32", word="little", byte="little") == number  # DCBA


def test_f32_with_a_fraction_and_nan() -> None:
    # 123.456 -> 0x42F6E979 (sign 0, exponent 133 = 2^6, fraction 0x76E979)
    assert read([0x42F6, 0xE979], "f32") == pytest.approx(123.456, abs=1e-5)
    assert read([0xE979, 0x42F6], "f32", word="little") == pytest.approx(123.456, abs=1e-5)
    placed = place("w", Field(address=0, type="f32"), Defaults())
    for nan in ([0x7FC0, 0x0000], [0x7F80, 0x0000]):  # quiet NaN, +infinity
        with pytest.raises(FieldError, match="not a finite number"):
            raw({"holding": Block(0, nan)}, placed)
    # value() keeps a float's 7 significant digits: 1.234 t written as f32 reads back as 1.234
    t = place("t", Field(address=0, type="f32", scale=1000), Defaults())
    assert value({"holding": Block(0, encode(t, 1234.0))}, t) == 1234.0  # type: ignore[arg-type]


def test_integers_in_both_word_orders() -> None:
    assert read([0x1234, 0x5678], "u32") == 0x12345678
    assert read([0x5678, 0x1234], "u32", word="little") == 0x12345678
    assert read([0xFFFF, 0xFF38], "i32") == -200  # two's complement of 200 = 0xFFFFFF38
    assert read([0xFF38, 0xFFFF], "i32", word="little") == -200
    assert read([0x8000, 0x0000], "i32") == -(2**31)
    assert read([0xFF38], "i16") == -200
    assert read([0xFF38], "u16") == 0xFF38
    assert read([0x38FF], "u16", byte="little") == 0xFF38
    assert read([0b0000_0100], "bool", bit=2) is True and read([0b0000_0100], "bool", bit=1) is False


def test_strings_high_or_low_byte_first() -> None:
    assert read([0x4142, 0x3132, 0], "string", length=3) == "AB12\0\0"
    assert read([0x4241, 0x3231, 0], "string", byte="little", length=3) == "AB12\0\0"


def test_scale_offset_and_a_value_outside_the_read() -> None:
    temp = place("t", Field(address=1, type="i16", scale=0.1, offset=-40), Defaults())
    assert value({"holding": Block(0, [0, 650])}, temp) == 25.0  # 65.0 - 40
    with pytest.raises(FieldError, match="outside the 1 values read from 0"):
        raw({"holding": Block(0, [0])}, temp)
    with pytest.raises(FieldError, match="not a 16-bit unsigned int"):
        raw({"holding": Block(0, [0, 70_000])}, temp)
    with pytest.raises(FieldError, match="no input read"):
        raw({"holding": Block(0, [0, 1])}, place("t", Field(address=1, function="input"), Defaults()))


# ---------------------------------------------------------------------------------------- profiles


def test_every_shipped_profile_loads_and_has_its_files_name() -> None:
    assert set(profile_names("sorting_station")) >= {"wastestream-v1", "hb-sc200"}
    assert set(profile_names("truck_io")) >= {"wastestream-v1", "dio8-wt"}
    for kind in KINDS:
        for name in profile_names(kind):
            assert load_profile(kind, name).profile == name


def station_doc(**changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load(profile_path("sorting_station", "wastestream-v1").read_text(encoding="utf-8"))
    doc.update(changes)
    return doc


def refused(kind: str, doc: dict[str, Any]) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(kind, yaml.safe_dump(doc), "vendor.yaml")
    text = str(info.value)
    assert text.startswith("vendor.yaml: ")
    return text


def test_a_copy_of_the_reference_profile_is_accepted() -> None:
    assert parse_profile("sorting_station", yaml.safe_dump(station_doc())).profile == "wastestream-v1"


def test_overlapping_registers_are_refused() -> None:
    doc = station_doc(epoch={"address": 2})  # the drop counter's register
    assert "drop_counter and epoch overlap at holding 2" in refused("sorting_station", doc) or \
        "epoch and drop_counter overlap at holding 2" in refused("sorting_station", doc)
    doc = station_doc()
    doc["bins"][0]["total"] = {"address": 7, "type": "u32"}  # 7..8 runs into the next bin's fill at 8
    text = refused("sorting_station", doc)
    assert "bins[recyclable].fill and bins[kitchen].total overlap at holding 8" in text
    doc = station_doc()
    doc["ring"]["stride"] = 12  # 13 registers per slot no longer fit: the card runs into the next slot
    text = refused("sorting_station", doc)
    assert "ring.card: its registers 5..12 run past the slot's stride 12" in text
    assert "overlap at holding 32" in text


def test_bits_of_one_register_may_share_it_but_not_with_a_whole_value() -> None:
    doc = yaml.safe_load(profile_path("truck_io", "wastestream-v1").read_text(encoding="utf-8"))
    doc.update(lid_closed={"function": "holding", "address": 5, "type": "bool", "bit": 0},
               bed_raised={"function": "holding", "address": 5, "type": "bool", "bit": 1})
    shared = parse_profile("truck_io", yaml.safe_dump(doc))
    assert isinstance(shared, TruckIoProfile) and shared.lid_closed.bit == 0
    doc["bed_raised"]["bit"] = 0
    assert "bed_raised and lid_closed overlap at holding 5" in refused("truck_io", doc)
    doc["bed_raised"] = {"function": "holding", "address": 2, "type": "bool", "bit": 3}  # the fault register
    assert "bed_raised and load overlap" not in refused("truck_io", doc)
    assert "fault and bed_raised overlap at holding 2" in refused("truck_io", doc)


def test_unknown_type_function_or_key_is_refused_with_its_path() -> None:
    doc = station_doc(drop_counter={"address": 2, "type": "u64"})
    text = refused("sorting_station", doc)
    assert "$.drop_counter.type" in text and "u64" not in ("u16", "u32")
    doc = station_doc(epoch={"address": 1, "function": "register"})
    assert "$.epoch.function" in refused("sorting_station", doc)
    doc = station_doc(epoch={"address": 1, "adress": 1})
    assert "unknown field `adress`" in refused("sorting_station", doc)
    doc = station_doc()
    doc["ring"]["verdict"]["codes"][3] = "maybe"
    assert "$.ring.verdict.codes[...]" in refused("sorting_station", doc)


def test_addresses_out_of_range_are_refused() -> None:
    assert "$.epoch.address" in refused("sorting_station", station_doc(epoch={"address": 65536}))
    assert "$.epoch.address" in refused("sorting_station", station_doc(epoch={"address": -1}))
    doc = yaml.safe_load(profile_path("truck_io", "wastestream-v1").read_text(encoding="utf-8"))
    doc["load"] = {"function": "input", "address": 65535, "type": "i32"}
    assert "load (input 65535): its 2 registers run past address 65535" in refused("truck_io", doc)
    doc["load"] = {"function": "input", "address": 0, "type": "i32"}
    doc["fault"] = {"function": "input", "address": 200, "mask": 1}  # 0..200: two reads
    assert "the input fields span addresses 0..200 (201), more than one Modbus read carries (125)" in \
        refused("truck_io", doc)


def test_missing_roles_are_refused() -> None:
    doc = station_doc()
    del doc["drop_counter"]
    assert "missing required field `drop_counter`" in refused("sorting_station", doc)
    doc = station_doc()
    del doc["ring"]["weight"]
    assert "missing required field `weight` - at `$.ring`" in refused("sorting_station", doc)
    assert "$.bins" in refused("sorting_station", station_doc(bins=[]))
    doc = yaml.safe_load(profile_path("truck_io", "dio8-wt").read_text(encoding="utf-8"))
    del doc["load"]
    assert "missing required field `load`" in refused("truck_io", doc)


def test_roles_of_the_wrong_shape_are_refused() -> None:
    doc = station_doc()
    doc["ring"]["slots"] = 6
    assert "ring.slots 6 is not a power of two" in refused("sorting_station", doc)
    doc = station_doc()
    doc["ring"]["seq"] = {"address": 0, "function": "input"}
    assert "ring.seq: in the input table, the counter in holding" in refused("sorting_station", doc)
    doc = station_doc()
    doc["ring"]["card"] = {"address": 5, "type": "string"}
    assert "a string needs `length`" in refused("sorting_station", doc)
    doc = station_doc()
    doc["ring"]["weight"] = {"address": 2, "type": "string", "length": 1}
    assert "ring.weight: type string is not numeric" in refused("sorting_station", doc)
    doc = station_doc()
    doc["bins"][0]["door"] = {"address": 5, "function": "coil", "type": "u16"}
    assert "a coil holds one bit, so its type must be bool" in refused("sorting_station", doc)
    doc = station_doc()
    doc["bins"][1]["category"] = "kitchen"
    assert "bins: kitchen appears twice" in refused("sorting_station", doc)
    wrong_kind = station_doc(kind="truck_io")
    assert "kind 'truck_io' is not 'sorting_station'" in refused("sorting_station", wrong_kind)


def test_a_profile_by_path_and_an_unknown_name(tmp_path: Path) -> None:
    own = tmp_path / "acme.yaml"
    own.write_text(yaml.safe_dump(station_doc(profile="acme-s1")), encoding="utf-8")
    assert load_profile("sorting_station", str(own)).profile == "acme-s1"
    with pytest.raises(ProfileError, match=r"no sorting_station profile 'acme'.*hb-sc200"):
        load_profile("sorting_station", "acme")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile("sorting_station", str(tmp_path / "missing.yaml"))


def test_schema_is_what_vendors_write_against() -> None:
    schema = profile_schema("sorting_station")
    root = schema["$defs"]["SortingStationProfile"]
    assert {"profile", "kind", "epoch", "drop_counter", "bins", "ring"} <= set(root["required"])
    field = schema["$defs"]["Field"]
    assert set(field["properties"]["type"]["enum"]) == {"u16", "i16", "u32", "i32", "f32", "string", "bool"}
    assert field["properties"]["address"]["maximum"] == 65535
    io = profile_schema("truck_io")["$defs"]["TruckIoProfile"]
    assert {"lid_closed", "bed_raised", "ignition", "load"} <= set(io["required"])


def test_wastestream_schema_exports_a_profile_schema(tmp_path: Path) -> None:
    out = tmp_path / "station.schema.json"
    run = subprocess.run([sys.executable, "-m", "wastestream.cli", "schema", "--profile", "sorting_station",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == profile_schema("sorting_station")
    bad = subprocess.run([sys.executable, "-m", "wastestream.cli", "schema", "--profile", "weighbridge"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no profiles for kind 'weighbridge'" in bad.stderr


def test_the_site_config_selects_a_profile_per_device(tmp_path: Path) -> None:
    from edge.config import ConfigError, parse_config

    key = tmp_path / "household.key"
    key.write_text("0" * 64, encoding="utf-8")

    def site(**device: Any) -> dict[str, Any]:
        return {"site_id": "c-1", "outbox": {"path": str(tmp_path / "o.db")}, "household_key_file": str(key),
                "devices": [device]}

    station = {"id": "ss-1", "kind": "sorting_station", "community_id": "c-1"}
    truck = {"id": "trk-1", "kind": "truck", "plate": "桂B1", "gps_port": "/dev/null"}
    chosen = [parse_config(site(**d)).devices[0]
              for d in (station, {**station, "profile": "hb-sc200"}, {**truck, "io_profile": "dio8-wt"})]
    assert [getattr(d, "profile", None) or getattr(d, "io_profile", None) for d in chosen] == [
        "wastestream-v1", "hb-sc200", "dio8-wt"]
    with pytest.raises(ConfigError, match=r"site.yaml: .*no sorting_station profile 'hb-sc300'.*devices\["):
        parse_config(site(**station, profile="hb-sc300"), "site.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(station_doc(profile="bad", epoch={"address": 2})), encoding="utf-8")
    with pytest.raises(ConfigError, match="overlap at holding 2"):
        parse_config(site(**station, profile=str(bad)), "site.yaml")
    with pytest.raises(ConfigError, match="no truck_io profile 'hb-sc200'"):
        parse_config(site(**truck, io_profile="hb-sc200"), "site.yaml")
