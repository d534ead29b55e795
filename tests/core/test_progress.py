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



def test_in_a_notebook_kernel_the_bar_is_html_redrawn_in_place(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, bundle, raw):
            shown.append(bundle)

    def display(bundle, raw, display_id):
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(P, "in_notebook", lambda: True)
    monkeypatch.setattr(P._NotebookBar, "REDRAW_S", 0.0)
    P.set_quiet(False)
    with P.progress(4, "features") as bar:
        bar.update(1)
        bar.update(3)
    assert shown[1]["text/plain"].startswith("features: 1/4 (25%), ") and "ETA" in shown[1]["text/plain"]
    assert '<progress value="4" max="4"' in shown[-1]["text/html"]
    assert shown[-1]["text/plain"].startswith("features: 4/4 (100%), ")


def test_a_notebook_is_a_running_ipython_kernel(monkeypatch):
    import sys
    import types

    assert not P.in_notebook()  # pytest: no kernel
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert P.in_notebook()
    shell.kernel = None  # a terminal IPython
    assert not P.in_notebook()
