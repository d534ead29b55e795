"""Human-readable outputs: run reports and the leaderboard page (HTML with embedded figures)."""

from .run_report import write_report

__all__ = ["write_report"]
