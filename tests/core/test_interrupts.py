import signal

import pytest

from bmbench.core import interrupts
from bmbench.runs.store import RunWriter


def test_a_swallowed_interrupt_stops_the_run_from_being_stored(tmp_path, swallow_ctrl_c):
    with interrupts.watch():
        with pytest.raises(KeyboardInterrupt):
            with RunWriter(tmp_path, "r") as w:
                (w.path / "metrics.json").write_text("{}")
                swallow_ctrl_c()
                assert interrupts.requested()
                w.commit()
    assert not interrupts.requested(), "the flag is cleared when the command ends"
    assert list((tmp_path / "runs").iterdir()) == []


def test_watch_restores_the_previous_handler_and_leaves_others_alone():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts.watch():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    mine = lambda *a: None  # noqa: E731
    previous = signal.signal(signal.SIGINT, mine)
    try:
        with interrupts.watch():
            assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
