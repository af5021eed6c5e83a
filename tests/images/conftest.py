"""The image tests need the real helm binary (the chart tests' fixture)."""

from tests.chart.conftest import helm_binary

__all__ = ["helm_binary"]
