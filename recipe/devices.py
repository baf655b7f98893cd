"""What training runs on: the CPU's flags, the arithmetic they allow, the devices TensorFlow sees,
and the tf.distribute strategy spreading a run over them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import tensorflow as tf

from ground.quiet_tensorflow import intra_op_threads
from recipe.config import TrainConfig

# The CPU flags of bfloat16 arithmetic (Linux's names). Without them oneDNN emulates bfloat16,
# slower than float32.
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}


@functools.cache  # asked for by every model built (tune.py builds one per trial)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()[2:]
    )


def training_precision(
    config: TrainConfig, flags: frozenset[str] | None = None, gpus: int | None = None
) -> str:
    """ "float32" or "bfloat16": what `config.precision` means on this machine. "auto" is bfloat16
    only on a CPU-only machine whose CPU has the bfloat16 instructions (`flags`)."""
    if config.precision != "auto":
        return config.precision
    gpus = len(tf.config.list_physical_devices("GPU")) if gpus is None else gpus
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if not gpus and flags & BFLOAT16_FLAGS else "float32"


def devices(config: TrainConfig) -> dict:
    """What training runs on: the GPUs TensorFlow sees, by name, or else the CPU and its threads;
    and in which arithmetic (`training_precision`)."""
    gpus = [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]
    return {
        "gpus": gpus,
        "cpu_threads": tf.config.threading.get_intra_op_parallelism_threads() or intra_op_threads(),
        "precision": training_precision(config, gpus=len(gpus)),
    }


def described_devices(found: dict) -> str:
    """`devices()` in words: "1 GPU: NVIDIA H100 80GB, float32" or "the CPU, 2 threads, bfloat16"."""
    gpus = found["gpus"]
    if gpus:
        return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {', '.join(gpus)}, {found['precision']}"
    return f"the CPU, {found['cpu_threads']} threads, {found['precision']}"


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy of that name; create it before TensorFlow does anything else."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
