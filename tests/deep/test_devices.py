import json
import os
import subprocess
import sys
import textwrap

import pytest

from bmbench.deep.devices import precision_policy, select_devices
from bmbench.config.recipe import TrainSpec

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset


@pytest.mark.parametrize("setting, kind, caps, policy", [
    ("auto", "CPU", (), "float32"),
    ("on", "CPU", (), "mixed_bfloat16"),
    ("off", "GPU", ((8, 0),), "float32"),
    ("auto", "GPU", ((8, 0), (7, 0)), "mixed_float16"),
    ("auto", "GPU", ((8, 0), (6, 1)), "float32"),
    ("on", "GPU", ((6, 1),), "mixed_float16"),
    (True, "CPU", (), "mixed_bfloat16"),  # YAML reads unquoted on/off as booleans
    (False, "GPU", ((8, 0),), "float32"),
])
def test_precision_policy(setting, kind, caps, policy):
    assert precision_policy(setting, kind, caps) == policy


def test_this_machine_selects_its_devices():
    import tensorflow as tf

    devices = select_devices(TrainSpec(mixed_precision="auto", jit_compile=True))
    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    assert devices.kind == kind and devices.replicas >= 1 and devices.jit_compile
    if kind == "CPU":
        assert devices.policy == "float32" and devices.replicas == 1
        assert select_devices(TrainSpec(mixed_precision="on")).policy == "mixed_bfloat16"


def test_scope_restores_the_global_dtype_policy():
    import keras

    devices = select_devices(TrainSpec(mixed_precision="on"))
    before = keras.config.dtype_policy().name
    with devices.scope():
        assert keras.config.dtype_policy().name == devices.policy
    assert keras.config.dtype_policy().name == before


TWO_DEVICES = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bmbench.runs.runner import run_recipe
run = run_recipe(sys.argv[1], sys.argv[2])
print("RUN=" + str(run))
"""

RECIPE = """
name: mirrored
dataset: {kind: synthetic, n_per_class: 12, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: cnn, depth: 2, width: 8}
train: {epochs: 2, batch_size: 8, mixed_precision: on, augment: [flip]}
"""


def test_two_logical_devices_train_with_mirrored_strategy(tmp_path):
    """The multi-GPU code path, exercised on a CPU split into two logical devices (this has
    to happen before TensorFlow initialises, hence the subprocess)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    env = {**os.environ, "BMBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(TWO_DEVICES), str(recipe),
                          str(tmp_path / "results")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = next(line[4:] for line in out.stdout.splitlines() if line.startswith("RUN="))
    info = json.loads(open(f"{run}/run.json").read())
    devices = info["notes"]["devices"]
    assert devices["replicas"] == 2 and devices["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert devices["precision"] == "mixed_bfloat16"
    assert info["model"]["stages"]["train"]["epochs"] == 2
    metrics = json.loads(open(f"{run}/metrics.json").read())
    assert metrics["n"] == 12
