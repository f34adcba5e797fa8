"""A city's indicator table (指标体系) as config: one YAML file per city, validated with msgspec.

Each indicator row carries what the plan prints (Chinese name, unit, baseline, 2023/2025
targets, the ★ mark) and a citation an official can follow: the document (`documents:`, with
its title, 文号 and plan period), the section or table row, and the quoted words. The line in
the source text the row was transcribed from (`line:` of the document's `seed:` text) is kept
for review and tests, never shown to readers. Plus how it is fed:
`computed` (a formula id in `wastestream.indicators.formulas.FORMULAS`) or `manual` (GDP,
surveys, ...: a value from a separate manual-inputs file, shown as such in the report).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

from wastestream.foundation.city import CITIES_DIR
from wastestream.foundation.city import available_cities as cities_with
from wastestream.indicators.formulas import FORMULAS
from wastestream.indicators.manual import ManualInputs, Year

LINES_RE = re.compile(r"^(?P<line>\d+)(?:[–-](?P<end>\d+))?$")
RISING_TEXTS = ("逐年提高",)
"""Text targets meaning "rising every year": judged against the previous period's value."""

Comparator = Literal["≥", "≤", "=", ">", "<"]


class IndicatorConfigError(ValueError):
    """A city table or manual-inputs file that cannot be used; the message names file and row."""


class Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Period(Base, frozen=True, kw_only=True):
    """A plan's period (规划期), in years: its targets are judged within it, not after."""

    start: Year | None = None
    end: Year

    def label(self) -> str:
        return f"{self.start}—{self.end}年" if self.start else f"至{self.end}年"


class Document(Base, frozen=True, kw_only=True):
    """A plan as an official cites it: title, issuer, 文号 (if it has one), period."""

    title: str
    doc_no: str = ""
    issuer: str = ""
    period: Period
    status: str = ""
    """E.g. 公开征求意见稿 (a draft)."""
    seed: Annotated[str, msgspec.Meta(pattern=r"^\d{3}_[0-9a-f]{16}\.txt$")]
    """The source text this table was transcribed from (for review; never rendered)."""

    def citation(self) -> str:
        """《title》（文号）: how the report names the plan."""
        extra = "，".join(x for x in (self.doc_no, self.status) if x)
        return f"《{self.title}》" + (f"（{extra}）" if extra else "")


class Source(Base, frozen=True, kw_only=True):
    """Where a figure is in a plan: document key, section or table row, the quoted words."""

    doc: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$")]
    section: str
    quote: str = ""
    line: Annotated[str, msgspec.Meta(pattern=r"^\d+(?:[–-]\d+)?$")]
    """Line(s) of the document's seed text (review only)."""


class Baseline(Base, frozen=True, kw_only=True):
    """The plan's baseline: a number for a year, or the source's own mark ("–", "未统计", "/")."""

    value: float | None = None
    year: Year | None = None
    text: str | None = None

    def label(self) -> str:
        if self.value is not None:
            return f"{self.value:g}" + (f" ({self.year})" if self.year else "")
        return self.text or "–"


class Target(Base, frozen=True, kw_only=True):
    """One target year: numeric with a comparator, or a text target (e.g. 逐年提高)."""

    year: Year
    value: float | None = None
    cmp: Comparator = "≥"
    text: str | None = None

    @property
    def rising(self) -> bool:
        return self.value is None and (self.text or "") in RISING_TEXTS

    def label(self) -> str:
        if self.value is not None:
            return f"{self.cmp} {self.value:g}" + (f" ({self.text})" if self.text else "")
        return self.text or "–"


class Indicator(Base, frozen=True, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$")]
    name_zh: str
    name_en: str
    unit: str
    mandatory: bool = False
    """★ in the plan's table."""
    baseline: Baseline = Baseline(text="–")
    targets: list[Target] = []
    source: Source
    feed: Literal["computed", "manual"]
    formula: str | None = None
    note: str = ""

    def target_for(self, year: int) -> Target | None:
        """The target for a period in `year`: the first target year ≥ it, else the last one
        (whether it still applies is the plan period's question: `CityTable.period_ended`)."""
        ordered = sorted(self.targets, key=lambda t: t.year)
        return next((t for t in ordered if t.year >= year), ordered[-1] if ordered else None)


class CityTable(Base, frozen=True, kw_only=True):
    city: Annotated[str, msgspec.Meta(pattern=r"^[a-z]+$")]
    name_zh: str
    name_en: str
    plan: str
    """The plan in one line (dashboards' descriptions)."""
    documents: dict[str, Document]
    plan_source: Source
    """The indicator table itself."""
    baseline_year: Year
    note: str = ""
    facility_names: dict[str, str] = {}
    """Facility id -> the name the plan and the city use, until the stream's rules carry names."""
    indicators: list[Indicator]

    def indicator(self, indicator_id: str) -> Indicator | None:
        return next((i for i in self.indicators if i.id == indicator_id), None)

    def document(self, source: Source) -> Document:
        return self.documents[source.doc]

    def cite(self, source: Source) -> str:
        """《title》（文号） section: what an official can look up; no file names."""
        return f"{self.document(source).citation()} {source.section}"

    def period_ended(self, indicator: Indicator, year: int) -> Period | None:
        """The plan period of the indicator's source when `year` is after it, else None."""
        period = self.document(indicator.source).period
        return period if year > period.end else None


def city_path(city: str) -> Path:
    """The city's indicator table: wastestream/foundation/cities/<city>/indicators.yaml."""
    return CITIES_DIR / city / "indicators.yaml"


def available_cities() -> list[str]:
    return cities_with("indicators.yaml")


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IndicatorConfigError(f"{path}: cannot read: {exc}") from None


def load_city(city_or_path: str | Path) -> CityTable:
    """Load and validate a city table by name (`liuzhou`) or path; errors name the file and row."""
    path = Path(city_or_path) if str(city_or_path).endswith(".yaml") else city_path(str(city_or_path))
    if not path.exists():
        raise IndicatorConfigError(f"no indicator table {path} (cities: {', '.join(available_cities())})")
    try:
        table = msgspec.convert(_read_yaml(path), CityTable)
    except msgspec.ValidationError as exc:
        raise IndicatorConfigError(f"{path}: {exc}") from None
    problems = validate_table(table)
    if problems:
        raise IndicatorConfigError(f"{path}: " + "; ".join(problems))
    return table


def validate_table(table: CityTable) -> list[str]:
    """Checks a schema cannot express: ids unique, feed/formula agree, units match, targets well formed."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, ind in enumerate(table.indicators):
        where = f"indicators[{i}] ({ind.id})"
        if ind.id in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(ind.id)
        if ind.source.doc not in table.documents:
            problems.append(f"{where}: source.doc {ind.source.doc!r} is not one of documents: "
                            f"{', '.join(sorted(table.documents))}")
        if ind.feed == "computed":
            formula = FORMULAS.get(ind.formula or "")
            if formula is None:
                problems.append(f"{where}: computed needs a formula, one of {', '.join(sorted(FORMULAS))}")
            elif formula.unit != ind.unit:
                problems.append(f"{where}: unit {ind.unit!r} but formula {ind.formula} "
                                f"gives {formula.unit!r}")
        elif ind.formula:
            problems.append(f"{where}: a manual indicator has no formula")
        for t in ind.targets:
            if t.value is None and not t.text:
                problems.append(f"{where}: target {t.year} needs a value or a text")
        if ind.baseline.value is None and not ind.baseline.text:
            problems.append(f"{where}: baseline needs a value or the source's text (–, 未统计, /)")
    if table.plan_source.doc not in table.documents:
        problems.append(f"plan_source.doc {table.plan_source.doc!r} is not one of documents")
    return problems


def load_manual(path: Path | str | None) -> ManualInputs:
    """Manual inputs (GDP-based, survey, population): a YAML file kept apart from the site data."""
    if path is None:
        return ManualInputs()
    path = Path(path)
    try:
        return msgspec.convert(_read_yaml(path) or {}, ManualInputs)
    except msgspec.ValidationError as exc:
        raise IndicatorConfigError(f"{path}: {exc}") from None


def seed_lines(table: CityTable, source: Source) -> tuple[str, int, int]:
    """(seed file, first line, last line) a citation was transcribed from: for review and tests."""
    m = LINES_RE.match(source.line)
    if not m:
        raise IndicatorConfigError(f"bad line {source.line!r}")
    first = int(m["line"])
    return table.document(source).seed, first, int(m["end"] or first)
