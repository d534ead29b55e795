"""Training helpers of the deep families."""
import math

from bmbench.deep.training import epoch_text


def test_epoch_lines_name_accuracy_and_the_validation_metrics():
    row = {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.79}
    assert epoch_text(row) == "loss 0.5000, accuracy 0.8000, val_loss 0.6000, val_accuracy 0.7900"
    assert epoch_text({"loss": 0.5, "accuracy": math.nan}) == "loss 0.5000"
