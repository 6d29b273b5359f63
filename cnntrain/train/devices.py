"""Which device trains, with which precision: chosen once, before TensorFlow runs any op."""
from __future__ import annotations

import os
import platform

from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError


def setup(device: str = "auto", *, precision: str = "float32", cpu_devices: int = 1,
          threads: int | None = None) -> dict:
    """Make `device` (auto | cpu | gpu) the one TensorFlow uses; return what was found and chosen.

    `precision` is float32, mixed (float16 on a GPU, bfloat16 on a CPU) or auto: mixed where the
    device has the units for it (`mixed_is_native`), float32 elsewhere.

    `threads` sets TensorFlow's intra-op thread pool (the threads one convolution uses) and keeps
    the inter-op pool (ops run side by side) at most 2: on a small CPU a second pool of the same
    size only makes the two compete for the cores. `cpu_devices` > 1 splits the CPU into that many
    logical devices, so that a mirrored strategy can be tried (and tested) on a machine without GPUs.
    """
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError as exc:   # only possible once TF has run an op
            raise CnntrainError(f"cannot set the threads: {exc}") from None
    gpus = tf.config.list_physical_devices("GPU")
    if cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
        except RuntimeError as exc:
            raise CnntrainError(f"cannot split the CPU into {cpu_devices} devices: {exc}") from None
    if device == "gpu" and not gpus:
        raise CnntrainError("--device gpu: TensorFlow sees no GPU on this machine",
                            hint="use --device cpu (or auto); for a GPU install a CUDA build "
                                 "('pip install tensorflow[and-cuda]') on a machine with an NVIDIA driver")
    # Already hidden: a sweep's next trial in the same process (TensorFlow refuses to set it twice).
    if device == "cpu" and gpus and tf.config.get_visible_devices("GPU"):
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as exc:  # only possible once TF has run an op
            raise CnntrainError(f"cannot hide the GPU: {exc}") from None
    use_gpu = bool(gpus) and device != "cpu"
    for gpu in gpus if use_gpu else []:
        # Grow GPU memory as needed instead of taking all of it at start.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass
    policy = "float32"
    if precision == "mixed" or (precision == "auto" and mixed_is_native(gpus if use_gpu else [])):
        # float16 needs the GPU's tensor cores; CPUs compute bfloat16 natively where they can.
        policy = "mixed_float16" if use_gpu else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    names = [gpu.name for gpu in gpus]
    return {
        "device": "gpu" if use_gpu else "cpu",
        "requested": device,
        "gpus_found": names,
        "gpus_used": len(gpus) if use_gpu else 0,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "precision": policy,
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
    }


def cpu_flags() -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def mixed_is_native(gpus: list) -> bool:
    """Whether mixed precision runs on units built for it: every GPU of compute capability >= 7.0
    (tensor cores), or with no GPU a CPU with bfloat16 instructions: AMX tiles (Sapphire Rapids and
    later), or AVX512_BF16 alone (Cooper Lake, AMD Zen 4), where cifar10_fast measured 1.30x and
    cifar10.yaml 1.20x against float32 on a 2-core Zen 4."""
    if gpus:
        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") for gpu in gpus]
        return all(c is not None and tuple(c) >= (7, 0) for c in capabilities)
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def describe(info: dict) -> str:
    found = f"{len(info['gpus_found'])} GPU(s) found" if info["gpus_found"] else "no GPU found"
    used = f"GPU x{info['gpus_used']}" if info["device"] == "gpu" else f"CPU ({info['cpu_count']} cores)"
    return f"device: {used}; {found}; precision {info['precision']}"
