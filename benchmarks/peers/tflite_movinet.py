"""The official MoViNet stream models as TFLite float32: the speed peer of vidnets.

For a model id (``a0`` ... ``a5``) this builds the official ``official.projects.movinet``
stream classifier with random, non-trivial weights (``tools/tf_reference.py``: random
kernels, biases, BN affines and ReZero scales, BN moving statistics calibrated on a
synthetic or given clip and jittered), saves its TF checkpoint, exports it for TFLite exactly as the
official README does (``export_saved_model.py`` with ``causal=True, conv_type=2plus1d,
se_type=2plus3d, activation=hard_swish, gating_activation=hard_sigmoid``, one frame per
call, no init-states signature; then ``tf.lite.TFLiteConverter.from_saved_model``) and
checks the ``.tflite`` against the TF logits of the same weights, frame by frame.

TensorFlow runs only in a subprocess (``_build``); everything else needs just
``ai_edge_litert``. Results are cached under ``$VIDNETS_CACHE/bench`` (default
``~/.cache/vidnets/bench``), keyed by model id, size, classes, seed, calibration clip and
a fingerprint of the build code and the TF versions (a full-size export takes minutes).
``--light-saved-model`` makes the same ``.tflite`` about 4x faster (see ``export``). The
same weights load into vidnets with
``vidnets.create_model(f"movinet_{model_id}_stream", weights=export.checkpoint)``.

Latency is per ``runner(**states, image=frame)`` call, batch 1, one frame, the state
outputs fed back as the next call's inputs (as an app does), so it includes the state
copies in and out.

    python benchmarks/peers/tflite_movinet.py                  # a0 a1 a2, 1 and 2 threads
    python benchmarks/peers/tflite_movinet.py --models a0 --threads 1 --frames 300
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TF_REFERENCE = ROOT / "tools" / "tf_reference.py"
NATIVE_SIZE = {"a0": 172, "a1": 172, "a2": 224, "a3": 256, "a4": 290, "a5": 320}
# The export must restore every model variable; the TFLite logits must then match the TF
# ones (float32, relative to the largest logit) within this.
SELF_CHECK_TOLERANCE = 1e-3
TF_PACKAGES = ("tensorflow", "tf_keras", "official")
# what the issue author measured here (1 thread, ms per frame)
REPORTED_MS = {"a0": 1.65, "a1": 3.4, "a2": 6.4}


def missing_packages() -> list[str]:
    """The packages an export needs that are not installed (TF stack + LiteRT)."""
    return [m for m in (*TF_PACKAGES, "ai_edge_litert") if importlib.util.find_spec(m) is None]


def cache_root() -> Path:
    """``$VIDNETS_CACHE/bench`` if set, else ``~/.cache/vidnets/bench``."""
    base = os.environ.get("VIDNETS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "vidnets") / "bench"


def _fingerprint() -> str:
    """Changes whenever what makes the files (``_build``, the weight recipe of
    ``tools/tf_reference.py``, the TF stack) changes; not on edits elsewhere here."""
    digest = hashlib.sha256(inspect.getsource(_build).encode())
    digest.update(TF_REFERENCE.read_bytes())
    for dist in ("tensorflow-cpu", "tensorflow", "tf-keras", "tf-models-official"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Export:
    """An exported model: its files and how it was made."""

    model_id: str
    size: int
    directory: Path
    meta: dict

    @property
    def tflite(self) -> Path:
        return self.directory / "model.tflite"

    @property
    def checkpoint(self) -> Path:
        """The TF checkpoint directory (``checkpoint``, ``ckpt-1.index``, ``ckpt-1.data-*``)."""
        return self.directory / "checkpoint"

    @property
    def reference(self) -> Path:
        """``npz`` of the TF model on the calibration clip: ``input``, ``logits_frames``..."""
        return self.directory / "reference.npz"

    @property
    def vidnets_name(self) -> str:
        return f"movinet_{self.model_id}_stream"


def export(
    model_id: str,
    *,
    size: int | None = None,
    seed: int = 0,
    num_classes: int = 600,
    frames: int = 8,
    video: np.ndarray | None = None,
    light_saved_model: bool = False,
    cache: Path | None = None,
    timeout: float = 3600,
) -> Export:
    """The cached export of ``model_id`` (built in a TF subprocess on first use).

    The BN statistics are calibrated on, and the TFLite model checked against, ``video``
    (float32 ``[1, T, size, size, 3]`` in [0, 1]; it sets ``size`` and ``frames``) or else
    a synthetic clip of ``frames`` frames (``tools/tf_reference.make_video``).

    ``light_saved_model``: the official exporter's model and signature function, but saved
    with ``tf.saved_model.save`` on a ``tf.Module`` holding only the model's variables in
    place of ``tf_keras.models.save_model`` (which also traces every Keras layer): export +
    conversion about 4x faster, and the same ``.tflite`` byte for byte (checked for A0 at
    64 and 172 px with TF 2.20; ``meta["tflite_sha256"]`` records each file's digest).
    """
    if model_id not in NATIVE_SIZE:
        raise ValueError(f"unknown MoViNet model id {model_id!r}; expected a0 ... a5")
    clip_key = ""
    if video is not None:
        video = np.ascontiguousarray(video, dtype=np.float32)
        if video.ndim != 5 or video.shape[0] != 1 or video.shape[4] != 3 or (
                video.shape[2] != video.shape[3]):
            raise ValueError(f"video must be [1, T, S, S, 3], got {video.shape}")
        if size not in (None, video.shape[2]):
            raise ValueError(f"size {size} but the video is {video.shape[2]} px")
        size, frames = video.shape[2], video.shape[1]
        clip_key = "_clip" + hashlib.sha256(video.tobytes()).hexdigest()[:8]
    size = size or NATIVE_SIZE[model_id]
    root = Path(cache) if cache is not None else cache_root()
    key = (f"movinet_{model_id}_stream_{size}px_{num_classes}c_{frames}f{clip_key}_seed{seed}"
           f"{'_light' if light_saved_model else ''}")
    directory = root / f"{key}_{_fingerprint()}"
    if (directory / "meta.json").is_file():
        meta = json.loads((directory / "meta.json").read_text())
        return Export(model_id, size, directory, {**meta, "cached": True})
    missing = missing_packages()
    if missing:
        raise RuntimeError(f"the TFLite MoViNet export needs {missing}: "
                           "pip install -e .[tf-reference,deploy-reference]")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    work.chmod(0o755)  # mkdtemp makes it private; the cache is not
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        command = [sys.executable, str(Path(__file__).resolve()), "_build",
                   "--model-id", model_id, "--size", str(size), "--seed", str(seed),
                   "--num-classes", str(num_classes), "--frames", str(frames),
                   "--out", str(work)]
        if light_saved_model:
            command.append("--light-saved-model")
        if video is not None:
            np.save(work / "video.npy", video)
            command += ["--video", str(work / "video.npy")]
        done = subprocess.run(command, env=env, timeout=timeout, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"TFLite export of {key} failed:\n{done.stderr[-4000:]}")
        meta = json.loads((work / "meta.json").read_text())
        record = np.load(work / "reference.npz")
        meta["self_check"] = check_against_tf(work / "model.tflite", record)
        if meta["self_check"]["relative"] > SELF_CHECK_TOLERANCE:
            raise RuntimeError(f"TFLite export of {key} does not match TF: {meta['self_check']}")
        (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            work.rename(directory)
        except OSError:  # exported concurrently by another process: keep theirs
            if not (directory / "meta.json").is_file():
                raise
        for stale in root.glob(f"{glob.escape(key)}_{'[0-9a-f]' * 12}"):  # older exporter
            if stale != directory and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Export(model_id, size, directory, {**meta, "cached": False})


class TFLiteStream:
    """One exported stream model in the LiteRT interpreter: ``step(frame, states)``."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner()
        inputs = self.runner.get_input_details()
        if "image" not in inputs:
            raise ValueError(f"{path}: no 'image' input in the signature ({sorted(inputs)})")
        self.image_shape = tuple(int(s) for s in inputs["image"]["shape"])
        self.state_specs = {name: (tuple(int(s) for s in d["shape"]), d["dtype"])
                            for name, d in inputs.items() if name != "image"}

    def init_states(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape, dtype) for name, (shape, dtype) in self.state_specs.items()}

    def step(self, image: np.ndarray, states: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``image`` float32 ``[1, 1, H, W, 3]`` in [0, 1] -> logits ``[1, C]``, new states."""
        outputs = self.runner(**states, image=image)
        logits = outputs.pop("logits")
        return logits, outputs

    def run(self, video: np.ndarray) -> np.ndarray:
        """Per-frame logits ``[T, 1, C]`` of a ``[1, T, H, W, 3]`` video from zero states."""
        states, out = self.init_states(), []
        for t in range(video.shape[1]):
            logits, states = self.step(np.ascontiguousarray(video[:, t:t + 1]), states)
            out.append(logits)
        return np.stack(out)


def check_against_tf(path: Path, record) -> dict[str, float]:
    """Max abs / relative difference of the TFLite per-frame logits from the TF ones."""
    logits = TFLiteStream(path).run(record["input"].astype(np.float32))
    reference = record["logits_frames"]
    diff = float(np.abs(logits - reference).max())
    return {"max_abs": diff, "relative": diff / float(np.abs(reference).max())}


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def latency(path: str | os.PathLike, *, num_threads: int = 1, frames: int = 200,
            warmup: int = 20, seed: int = 0) -> tuple[float, float]:
    """Median and p90 ms per one-frame call, states carried from call to call."""
    return percentiles(call_times(path, num_threads=num_threads, frames=frames,
                                  warmup=warmup, seed=seed))


def call_times(path: str | os.PathLike, *, num_threads: int = 1, frames: int = 200,
               warmup: int = 20, seed: int = 0) -> list[float]:
    """ms of each timed one-frame call (after ``warmup`` calls), states carried over."""
    stream = TFLiteStream(path, num_threads=num_threads)
    rng = np.random.default_rng(seed)
    video = rng.uniform(0.0, 1.0, (16, *stream.image_shape)).astype(np.float32)
    states, times = stream.init_states(), []
    for t in range(warmup + frames):
        image = video[t % len(video)]
        start = time.perf_counter()
        _, states = stream.step(image, states)
        if t >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


# --------------------------------------------------------------------------- TF side


def _load_tf_reference():
    spec = importlib.util.spec_from_file_location("vidnets_tools_tf_reference", TF_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(args: argparse.Namespace) -> None:
    """Subprocess: random official model -> checkpoint -> SavedModel -> ``model.tflite``."""
    timings = {}
    start = time.perf_counter()
    ref = _load_tf_reference()  # imports TensorFlow
    import tensorflow as tf
    import tf_keras
    from absl import logging as absl_logging
    from official.projects.movinet.tools import export_saved_model

    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)
    timings["import_s"] = time.perf_counter() - start
    out = Path(args.out)

    # 1. Random weights + calibrated, jittered BN statistics; TF checkpoint + TF logits.
    start = time.perf_counter()
    if args.video:
        video = np.load(args.video)
        Path(args.video).unlink()
    else:
        video = ref.make_video(args.seed, args.frames, args.size)
    name = f"{args.model_id}_stream"
    options = argparse.Namespace(out=out, seed=args.seed, num_classes=args.num_classes,
                                 conv_type="2plus1d", check_sensitivity=False)
    ref.make_reference(name, options, video, None)
    (out / name).rename(out / "checkpoint")
    (out / f"{name}.npz").rename(out / "reference.npz")
    for extra in (f"{name}.tar.gz", f"{name}.variables.txt"):
        (out / extra).unlink()
    prefix = tf.train.latest_checkpoint(str(out / "checkpoint"))
    timings["weights_s"] = time.perf_counter() - start

    # 2. SavedModel exactly as the README's export_saved_model.py command line. The
    # exporter compiles its model, which adds optimizer variables (learning_rate,
    # iteration) the checkpoint lacks, hence assert_checkpoint_objects_matched=False; the
    # TFLite-vs-TF self-check (in ``export``) proves every weight arrived.
    start = time.perf_counter()
    saved_model = out / "saved_model"
    keras_save = tf_keras.models.save_model
    if args.light_saved_model:
        def save_variables_and_signature(model, path, signatures=None, **_):
            root = tf.Module()
            root.model_variables = list(model.variables)
            tf.saved_model.save(root, path, signatures=signatures)

        tf_keras.models.save_model = save_variables_and_signature
    try:
        export_saved_model.build_and_export_saved_model(
            export_path=str(saved_model),
            model_id=args.model_id,
            causal=True,
            conv_type="2plus1d",
            se_type="2plus3d",
            activation="hard_swish",
            gating_activation="hard_sigmoid",
            use_positional_encoding=args.model_id in {"a3", "a4", "a5"},
            num_classes=args.num_classes,
            input_shape=(1, 1, args.size, args.size, 3),
            bundle_input_init_states_fn=False,
            checkpoint_path=prefix,
            assert_checkpoint_objects_matched=False,
        )
    finally:
        tf_keras.models.save_model = keras_save
    timings["saved_model_s"] = time.perf_counter() - start

    # 3. TFLite float32, as the README: the default converter, no optimisations.
    start = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    (out / "model.tflite").write_bytes(converter.convert())
    timings["convert_s"] = time.perf_counter() - start
    shutil.rmtree(saved_model)

    meta = {
        "model_id": args.model_id, "size": args.size, "num_classes": args.num_classes,
        "seed": args.seed, "frames": args.frames, "tensorflow": tf.__version__,
        "saved_model": "light" if args.light_saved_model else "keras",
        "tflite_sha256": hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest(),
        "tflite_mb": (out / "model.tflite").stat().st_size / 2**20,
        **{k: round(v, 2) for k, v in timings.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_build"]:
        parser = argparse.ArgumentParser(prog="tflite_movinet.py _build")
        parser.add_argument("--model-id", required=True)
        parser.add_argument("--size", type=int, required=True)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--num-classes", type=int, default=600)
        parser.add_argument("--frames", type=int, default=8)
        parser.add_argument("--video", default=None, help=".npy [1, T, S, S, 3] to calibrate on")
        parser.add_argument("--light-saved-model", action="store_true")
        parser.add_argument("--out", required=True)
        _build(parser.parse_args(argv[1:]))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["a0", "a1", "a2"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--frames", type=int, default=200, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="default: native size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None, help="default: " + str(cache_root()))
    parser.add_argument("--light-saved-model", action="store_true",
                        help="faster export, same .tflite (see export())")
    args = parser.parse_args(argv)

    print(f"{'model':<6} {'input':>13} {'export':>22} {'MB':>5} {'vs TF':>8} "
          f"{'threads':>7} {'median ms':>9} {'p90 ms':>7} {'min ms':>7} {'reported':>8}")
    for model_id in args.models:
        result = export(model_id, size=args.size, seed=args.seed, cache=args.cache,
                        light_saved_model=args.light_saved_model)
        meta = result.meta
        made = ("cached" if meta["cached"] else
                f"{meta['saved_model_s']:.0f}s + convert {meta['convert_s']:.0f}s")
        for threads in args.threads:
            times = call_times(result.tflite, num_threads=threads, frames=args.frames,
                               warmup=args.warmup, seed=args.seed)
            median, p90 = percentiles(times)
            reported = REPORTED_MS.get(model_id) if threads == 1 and args.size is None else None
            print(f"{model_id:<6} {f'1x1x{result.size}x{result.size}':>13} {made:>22} "
                  f"{meta['tflite_mb']:>5.1f} {meta['self_check']['relative']:>8.1e} "
                  f"{threads:>7} {median:>9.2f} {p90:>7.2f} {min(times):>7.2f} "
                  f"{f'{reported:.2f}' if reported else '-':>8}", flush=True)
    print("export: SavedModel export + TFLite conversion (first run; later runs read the "
          f"cache in {args.cache or cache_root()}); vs TF: max |TFLite - TF| / max |TF| "
          "logits over a synthetic clip; reported: the issue author's 1-thread figure")


if __name__ == "__main__":
    main()
