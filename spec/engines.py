"""The settings of the three numeric engines — TensorFlow, JAX (XLA) and torch — that every executor
running on one applies when it loads: float32 kept exact on GPUs, the intra-op threads of
``TRIPTYCH_THREADS``, torch's compiler. Written once here because two executors share each engine
(torch and Keras-on-torch, jax and Keras-on-JAX, Keras on TensorFlow); each function imports its
engine only when called, so this module stays framework-free.
"""

from __future__ import annotations

import os

from spec.backend import intra_op_threads
from spec.errors import SpecError

ENGINES = ("tensorflow", "jax", "torch")


def configure(engine: str) -> str:
    """Apply triptych's settings to ``engine`` (exact float32, threads, compiler); returns the
    intra-op thread setting in force, as :meth:`spec.backend.Backend.threads` reports it."""
    match engine:
        case "torch":
            return _configure_torch()
        case "jax":
            return _configure_jax()
        case "tensorflow":
            return _configure_tensorflow()
    raise SpecError("engine", engine, ENGINES)


def _configure_torch() -> str:
    import torch
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Full float32 matmuls and convolutions on CUDA (no TF32): equivalence checks measure the model,
    # not the hardware's reduced-precision mode.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    # Let torch.compile compile every zoo model, and fail rather than fall back. Dynamo keeps one
    # cache per code object — the training loss, optimizer.step and Module.forward are shared by
    # every model — and after 8 entries (its default recompile_limit) it silently ran the rest
    # eagerly: a "compiled" Transformer step took as long as the eager one in `make bench`.
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    # Inductor's CPU layout optimization (every convolution graph in channels_last) gave zero weight
    # gradients to both convolutions of digits_cnn's compiled backward (docs/findings.md, finding 7).
    torch._inductor.config.layout_optimization = False
    # Inductor's on-disk cache is not keyed on ATen's CPU capability: kernels compiled under one were
    # reused under another and corrupted the heap, or computed wrong values (finding 13). Unless the
    # caller chose a directory, each capability gets its own (torch writes its default into the
    # environment when it first looks the directory up).
    default = os.path.abspath(default_cache_dir())
    if os.path.abspath(os.environ.get("TORCHINDUCTOR_CACHE_DIR", default)) == default:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(default, torch.backends.cpu.get_cpu_capability())
    threads = intra_op_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    return f"{torch.get_num_threads()}" + ("" if threads else " (default)")


def _configure_jax() -> str:
    # XLA reads its flags when its client starts (the first jax.devices()), so the threads come
    # first. XLA runs one thread per op or its own pool over every core, nothing between.
    threads = intra_op_threads()
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    import jax

    # JAX's default lets GPUs use TF32 (and TPUs bfloat16 passes) for float32 matmuls and
    # convolutions, which equivalence checks must not measure.
    jax.config.update("jax_default_matmul_precision", "highest")
    if threads is None:
        return "default (every core)"
    return "1" if threads == 1 else f"every core (XLA cannot pin {threads} threads)"


def _configure_tensorflow() -> str:
    import tensorflow as tf

    # Its pools can be sized only before it runs its first op, which is why backends load it first.
    threads = intra_op_threads()
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # TensorFlow enables TF32 on GPUs by default.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return "default (every core)" if threads is None else str(threads)


def device(engine: str) -> str:
    """The device ``engine`` runs models on: ``cpu``, ``cuda:0``, ``gpu:0``."""
    match engine:
        case "torch":
            import torch

            return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        case "jax":
            import jax

            first = jax.devices()[0]
            return "cpu" if first.platform == "cpu" else f"{first.platform}:{first.id}"
        case "tensorflow":
            import tensorflow as tf

            return "gpu:0" if tf.config.list_logical_devices("GPU") else "cpu"
    raise SpecError("engine", engine, ENGINES)
