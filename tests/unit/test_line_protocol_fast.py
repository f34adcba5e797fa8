"""The line protocol's fast paths (issue 14: skip str.translate when nothing needs escaping, cache
keys) write exactly what always translating writes, for any text."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.sinks import line_protocol
from stream.sinks.line_protocol import Point, to_line

texts = st.text(alphabet=st.sampled_from(list('ab, =\\"\n\r\t中')), max_size=8)


def reference(point: Point) -> str:
    """The line as written before the fast paths: every text through str.translate."""
    def key(text: str) -> str:
        return text.translate(line_protocol._KEY_ESCAPES).rstrip("\\")

    def value(v: object) -> str | None:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return f"{v}i"
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else None
        assert isinstance(v, str)
        return '"' + v.translate(line_protocol._STRING_ESCAPES) + '"'

    parts = [point.measurement.translate(line_protocol._MEASUREMENT_ESCAPES)]
    parts += [f"{key(k)}={key(point.tags[k])}" for k in sorted(point.tags) if point.tags[k]]
    fields = [f"{key(k)}={v}" for k in sorted(point.fields) if (v := value(point.fields[k])) is not None]
    return f"{','.join(parts)} {','.join(fields)} {point.ts_ns}"


@given(st.text(min_size=1, max_size=6), st.dictionaries(texts, texts, max_size=3),
       st.dictionaries(texts, st.one_of(texts, st.floats(), st.integers(), st.booleans()), min_size=1,
                       max_size=3))
def test_fast_paths_write_what_translating_writes(measurement: str, tags: dict[str, str],
                                                  fields: dict[str, line_protocol.FieldValue]) -> None:
    point = Point(measurement, tags, fields, 1_700_000_000_000_000_000)
    expected = reference(point)
    if expected.rsplit(" ", 2)[-2] == "":  # no representable field: refused, as before
        with pytest.raises(ValueError):
            to_line(point)
    else:
        assert to_line(point) == expected
