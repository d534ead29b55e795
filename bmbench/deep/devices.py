"""Where and how Keras trains: device choice, precision, multi-device strategy, XLA, seeds.

The same recipe runs unchanged on a laptop CPU, one GPU or several:

* **Devices**: the GPUs TensorFlow sees (memory growth on, so other processes can share
  them), else the CPU. With two or more logical devices of that kind, training is
  replicated over them with ``tf.distribute.MirroredStrategy`` (``train.batch_size`` is the
  global batch, split evenly between replicas); otherwise the default strategy.
* **Precision** (``train.mixed_precision``): ``auto`` = ``mixed_float16`` when every GPU has
  compute capability 7.0 or newer (tensor cores), else ``float32``; ``on`` forces mixed
  precision (``mixed_bfloat16`` on CPU, where float16 is slow); ``off`` = ``float32``.
  Models keep a float32 softmax layer either way.
* **XLA** (``train.jit_compile``) compiles training steps.
* **Seeds**: Python, NumPy and TensorFlow are seeded from the recipe seed;
  ``train.deterministic`` also turns on TensorFlow op determinism (process-wide, slower).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger("bmbench.run")

#: Oldest GPU compute capability with float16 tensor cores.
MIN_FLOAT16_CAPABILITY = (7, 0)


@dataclass
class Devices:
    """The devices one run trains on.

    kind: ``"GPU"`` or ``"CPU"``. names: the logical devices replicated over (one name: no
    replication). policy: the Keras dtype policy. capabilities: GPU compute capabilities.
    """

    kind: str
    names: tuple[str, ...]
    policy: str
    jit_compile: bool
    deterministic: bool
    capabilities: tuple[tuple[int, int], ...] = ()
    _strategy: object = field(default=None, repr=False)

    @property
    def replicas(self) -> int:
        return len(self.names)

    @property
    def strategy(self):
        """``MirroredStrategy`` over :attr:`names` when there are several, else the default
        strategy. Created once: models built in its scope must train in the same one."""
        import tensorflow as tf

        if self._strategy is None:
            self._strategy = (tf.distribute.MirroredStrategy(list(self.names)) if self.replicas > 1
                              else tf.distribute.get_strategy())
        return self._strategy

    @contextmanager
    def scope(self):
        """Build, compile and train inside this: sets the dtype policy (restored on exit)
        and enters the strategy scope."""
        import keras

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)
        try:
            with self.strategy.scope():
                yield self
        finally:
            keras.config.set_dtype_policy(previous)

    def describe(self) -> dict:
        return {"device": self.kind, "replicas": self.replicas, "devices": list(self.names),
                "precision": self.policy, "jit_compile": self.jit_compile,
                "deterministic": self.deterministic}


def select_devices(train) -> Devices:
    """Devices and settings for ``train`` (a :class:`~bmbench.config.recipe.TrainSpec`)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised: keep its setting
            pass
    capabilities = tuple(_capability(g) for g in gpus)
    kind = "GPU" if gpus else "CPU"
    names = tuple(d.name for d in tf.config.list_logical_devices(kind))
    policy = precision_policy(train.mixed_precision, kind, capabilities)
    if kind == "GPU" and policy == "mixed_float16" and min(capabilities) < MIN_FLOAT16_CAPABILITY:
        log.warning("mixed precision forced on GPUs without tensor cores (compute capability %s); "
                    "training may be slower than float32", min(capabilities))
    return Devices(kind, names, policy, bool(train.jit_compile), bool(train.deterministic),
                   capabilities)


def precision_policy(setting: str | bool, kind: str, capabilities: tuple[tuple[int, int], ...]) -> str:
    """The Keras dtype policy for ``train.mixed_precision`` ``setting`` (``auto``, ``on`` or
    ``off``; YAML's unquoted on/off arrive as True/False) on ``kind`` devices."""
    if setting is True or setting is False:
        setting = "on" if setting else "off"
    if setting == "off":
        return "float32"
    if kind == "CPU":
        return "mixed_bfloat16" if setting == "on" else "float32"
    if setting == "on" or (capabilities and min(capabilities) >= MIN_FLOAT16_CAPABILITY):
        return "mixed_float16"
    return "float32"


def _capability(gpu) -> tuple[int, int]:
    import tensorflow as tf

    try:
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    except (RuntimeError, ValueError):
        cc = None
    return tuple(cc) if cc else (0, 0)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def quiet_tensorflow() -> None:
    """Keep TensorFlow's Python warnings (e.g. about retracing predict functions of several
    models) out of the run log; errors still show."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def prepare_devices(ctx) -> Devices:
    """Seed, select the devices for ``ctx.train`` and record them in ``ctx.notes``."""
    quiet_tensorflow()
    train = ctx.train
    seed_everything(ctx.seed, train.deterministic)
    devices = select_devices(train)
    ctx.notes.devices = devices.describe()
    log.info("training on %d %s device(s), %s%s", devices.replicas, devices.kind, devices.policy,
             ", XLA" if devices.jit_compile else "")
    return devices
