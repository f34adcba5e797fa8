"""The indicator report: one self-contained HTML file (inline CSS and SVG) for a period."""

from wastestream.report.build import build_report

__all__ = ["build_report"]
