"""Rows must hold what a pandas DataFrame of the same dicts holds, and sort and rank as pandas
does: the terminal leaderboard reads Rows, every other format the DataFrame."""

import math
import random

import numpy as np
import pandas as pd
import pytest

from bmbench.views.rows import Rows, is_missing, min_rank, sort_rows

COLUMNS = {
    "ints": [1, 2, 3, 4],
    "ints_with_none": [1, None, 3, 4],
    "floats_and_ints": [1, 2.5, 3, 4],
    "none_only": [None, None, None, None],
    "text": ["a", None, "c", "d"],
    "mixed": ["a", 1, 2.0, None],
    "bools": [True, False, None, True],
    "numpy": [np.float64(0.5), None, np.int64(2), 1],
}


@pytest.mark.parametrize("name", COLUMNS)
def test_columns_hold_what_the_dataframe_holds(name):
    data = tuple({"run": f"r{i}", name: v} for i, v in enumerate(COLUMNS[name]))
    rows = Rows(("run", name), data)
    expected = pd.DataFrame(list(data))[name].tolist()
    got = rows.column(name)
    if pd.api.types.is_numeric_dtype(pd.DataFrame(list(data))[name]):  # numbers: NaN where missing
        assert [type(v) is float and math.isnan(v) for v in got] == [math.isnan(v) for v in expected]
    assert [None if is_missing(v) else v for v in got] == [None if is_missing(v) else v for v in expected]
    assert [type(v) for v in got if not is_missing(v)] == [type(v.item() if hasattr(v, "item") else v)
                                                            for v in expected if not is_missing(v)]
    pd.testing.assert_frame_equal(rows.frame(), pd.DataFrame(list(data)))


def test_nullable_int_columns_become_pandas_Int64():
    rows = Rows(("rank",), ({"rank": 1}, {"rank": None}), ("rank",))
    assert rows.column("rank") == [1, None]
    assert str(rows.frame()["rank"].dtype) == "Int64" and rows.frame()["rank"].isna().tolist() == [False, True]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("descending", [True, False])
def test_sorting_and_ranking_match_pandas(seed, descending):
    rng = random.Random(seed)
    values = [rng.choice([None, float("nan"), 0.5, 0.7, 0.7, 0.9, 1.0, rng.random()]) for _ in range(15)]
    data = [{"run": f"run{rng.randrange(100):03d}-{i}", "m": v} for i, v in enumerate(values)]
    got = sort_rows(data, "m", "run", descending)
    frame = pd.DataFrame(data).sort_values(["m", "run"], ascending=[not descending, True], na_position="last")
    assert [r["run"] for r in got] == frame["run"].tolist()
    ranks = frame["m"].rank(method="min", ascending=not descending).astype("Int64")
    assert min_rank([r["m"] for r in got], descending) == [None if v is pd.NA else int(v) for v in ranks]


def test_is_missing():
    assert is_missing(None) and is_missing(float("nan")) and is_missing(np.nan) and is_missing(pd.NA)
    assert not any(is_missing(v) for v in (0, 0.0, "", "nan", np.float64(1.0), False))
