from bmbench.core import progress as P


def test_a_bar_off_a_terminal_prints_lines_with_rate_and_eta(capsys, monkeypatch):
    monkeypatch.setattr(P, "LOG_EVERY_S", 0.0)
    P.set_quiet(False)
    with P.progress(4, "features") as bar:
        bar.update(1)
        bar.update(3)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("features: 1/4 (25%), ") and "/s, ETA " in lines[0]
    assert lines[-1].startswith("features: 4/4 (100%), ") and "ETA" not in lines[-1]


def test_a_terminal_bar_shows_the_rate_beside_count_and_eta():
    shown = []

    class Bar:
        def update(self, n, current_item=None):
            shown.append((n, current_item))

    rated = P._Rated(Bar())
    rated.update(5)
    assert shown[0][0] == 5 and shown[0][1].endswith("/s")


def test_quiet_and_silenced_print_nothing(capsys):
    P.set_quiet(True)
    with P.progress(3, "x") as bar:
        bar.update(3)
    P.set_quiet(False)
    with P.silenced(), P.progress(3, "y") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""

