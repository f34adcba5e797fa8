"""A city-scale load model: how many messages a city of N people sends at its busiest.

The figures are stated assumptions (typical for a Chinese city under the four-way sort and
定时定点 timed drop-off), not measurements; change them here. They turn "is the pipeline fast
enough" into a number to hold the benchmark's sustained rate against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class CityModel:
    population: int = 4_000_000
    people_per_household: float = 2.8
    households_per_station: int = 400
    participation: float = 0.6
    """Share of households that drop at a station on a given day."""
    drops_per_household_day: float = 1.5
    peak_share: float = 0.8
    """Share of the day's drops in the two timed windows (7-9 and 18-20 h)."""
    peak_window_h: float = 4.0
    peak_minute_factor: float = 2.0
    """Busiest minute against the windows' mean."""
    bins_per_station: int = 4
    bin_report_s: float = 300.0
    collection_trucks_per_100k: float = 22.0
    muck_trucks_per_100k: float = 50.0
    truck_active_share: float = 0.6
    truck_report_s: float = 10.0
    """GPS + I/O report interval while the ignition is on (JT/T 808 terminals: 10-30 s)."""
    weighbridges: int = 60
    tickets_per_day: int = 3_000
    """In and out weighings at all transfer stations, incinerators and 消纳场 together."""
    operating_h: float = 16.0
    heartbeat_s: float = 60.0

    def devices(self) -> dict[str, int]:
        households = self.population / self.people_per_household
        trucks = self.population / 100_000 * (self.collection_trucks_per_100k + self.muck_trucks_per_100k)
        return {"sorting_station": round(households / self.households_per_station),
                "truck": round(trucks), "weighbridge": self.weighbridges}

    def peak_rates(self) -> dict[str, float]:
        """Messages per second at the busiest minute, per event type."""
        d = self.devices()
        households = self.population / self.people_per_household
        drops = households * self.participation * self.drops_per_household_day
        deposit = drops * self.peak_share / (self.peak_window_h * 3600) * self.peak_minute_factor
        return {
            "deposit": deposit,
            "bin_level": d["sorting_station"] * self.bins_per_station / self.bin_report_s,
            "truck_telemetry": d["truck"] * self.truck_active_share / self.truck_report_s,
            "weighing": self.tickets_per_day / (self.operating_h * 3600) * 3,  # busy hours: 3x the mean
            "device_status": sum(d.values()) / self.heartbeat_s,
        }

    def summary(self) -> dict[str, object]:
        rates = self.peak_rates()
        return {"assumptions": asdict(self), "devices": self.devices(),
                "peak_msg_per_s": {k: round(v, 1) for k, v in rates.items()},
                "peak_total_msg_per_s": round(sum(rates.values()), 1)}


SCALES = {
    "city": CityModel(),
    # Ten cities' worth: ten times the people, stations, trucks, weighbridges and tickets
    # (~4,700 msg/s at the busiest minute).
    "province": CityModel(population=40_000_000, weighbridges=600, tickets_per_day=30_000),
}
"""The named sizes of `make bench-city` (`--scale`)."""


def model_for(scale: str, population: int | None = None) -> CityModel:
    """SCALES[scale], with another population if given (its devices and rates follow it)."""
    model = SCALES[scale]
    return model if population is None else replace(model, population=population)
