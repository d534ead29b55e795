import pandas as pd
import pytest

from bmbench.data.labels import apply_label_map
from bmbench.core.errors import DatasetError

ROWS = pd.DataFrame({"relpath": list("abcdef"), "label": ["BLA", "BLA", "NGS", "LYT", "MON", "EOS"]})


def test_rename_merge_and_drop():
    out = apply_label_map(ROWS, {"NGS": "neutrophil", "LYT": "mononuclear", "MON": "mononuclear",
                                 "EOS": None}, "d")
    assert out["label"].tolist() == ["BLA", "BLA", "neutrophil", "mononuclear", "mononuclear"]


def test_wildcard_derives_blast_vs_rest():
    out = apply_label_map(ROWS, {"BLA": "blast", "*": "rest"}, "d")
    assert out["label"].value_counts().to_dict() == {"rest": 4, "blast": 2}
    only = apply_label_map(ROWS, {"BLA": "blast", "NGS": "NGS", "*": None}, "d")
    assert only["relpath"].tolist() == ["a", "b", "c"]


def test_unknown_source_label_is_an_error_with_a_hint():
    with pytest.raises(DatasetError, match=r"label_map names 'NSG'.*did you mean 'NGS'"):
        apply_label_map(ROWS, {"NSG": "neutrophil"}, "d")


def test_no_map_is_identity():
    assert apply_label_map(ROWS, None, "d") is ROWS
