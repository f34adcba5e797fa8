"""City indicators (无废城市指标) computed from the site data against each city's plan targets.

- `config`: the city tables (cities/*.yaml) and manual inputs, validated.
- `data`: one period's site data read from InfluxDB with InfluxQL.
- `alerts`: the alert service's alerts of the period (API or read-only SQLite).
- `formulas`: one function per indicator formula (formula and source in its docstring).
- `evaluate`: value and status against the applicable target.
"""

from wastestream.indicators.config import CityTable, IndicatorConfigError, load_city, load_manual
from wastestream.indicators.evaluate import IndicatorResult, Status, evaluate_table
from wastestream.indicators.formulas import FORMULAS, Context

__all__ = ["FORMULAS", "CityTable", "Context", "IndicatorConfigError", "IndicatorResult", "Status",
           "evaluate_table", "load_city", "load_manual"]
