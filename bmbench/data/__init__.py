"""Data set kinds (one description table), loaders, image decoding and the synthetic set."""

from .load import load_dataset
from .registry import get_kind, list_kinds
from .table import DatasetTable

__all__ = ["load_dataset", "get_kind", "list_kinds", "DatasetTable"]
