"""Training helpers of the deep families."""
import math

from bmbench.deep.training import epoch_text


def test_epoch_lines_name_accuracy_and_the_validation_metrics():
    row = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.79}
    assert epoch_text(row) == "loss 0.5000, accuracy 0.8000, val_loss 0.6000, val_accuracy 0.7900"
    assert epoch_text({"loss": 0.5, "accuracy": math.nan}) == "loss 0.5000"


def test_the_kept_epoch_is_said_and_whether_training_stopped_early():
    from bmbench.deep.training import kept_text

    assert kept_text(38, 40, 33, "val_loss") == "stopped early at epoch 38/40; kept epoch 33 (best val loss)"
    assert kept_text(40, 40, 40, "loss") == "ran all 40 epochs; kept epoch 40 (best loss)"


def test_the_eta_covers_the_stages_and_folds_still_to_come():
    from bmbench.deep.training import RunPlan

    assert RunPlan(10).eta_text(4, 2.0) == "at most 12 s left in the run"
    # 6 epochs of this stage, 5 of fine-tuning, then 2 more folds of 15 epochs: 6+5+30 = 41 epochs of 3 s
    assert RunPlan(10, later_epochs=5, fold=0, n_folds=3).eta_text(4, 3.0) == \
        "at most 18 s left in this stage, 2.0 min in the run"
    assert RunPlan(10, fold=2, n_folds=3).eta_text(10, 3.0) == "at most 0 s left in the run"
