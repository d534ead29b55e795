from bmbench.views.cells import format_amount, format_value


def test_seconds_and_rates_read_alike_whatever_their_size():
    assert [format_amount(v) for v in (0.0612, 4.851, 23.94, 1459.3, None, float("nan"))] == \
        ["0.06", "4.9", "23.9", "1459", "-", "-"]
    assert format_value(0.81234) == "0.8123"  # scores keep their 4 decimals
