"""The official TF MoViNet base models (tf-models-official, TF CPU): clip throughput.

Run as a worker process by ``benchmarks/clip_speed.py`` (TensorFlow fixes its thread
pools when it starts, so every thread count is its own process, and the PyTorch process
never imports TensorFlow). The model is built exactly as the official README
(``movinet.Movinet(model_id, causal=False)`` + ``MovinetClassifier``, 600 classes) by
``tools/tf_reference.py``, given random non-trivial weights once and saved as a TF
checkpoint under ``--out`` (later runs restore it), so that vidnets loads the very same
weights (``create_model(f"movinet_{id}_base", weights=out / "ckpt")``) and its logits on
``--out/check.npz``'s clip can be compared. The forward is a ``tf.function`` (graph
mode, ``training=False``), timed as the median of ``--repeats`` calls after one warm-up.

    python benchmarks/peers/tf_movinet_base.py --model-id a0 --threads 1 --batches 1 8 \\
        --frames 50 --size 172 --out /tmp/tf_a0  # prints one JSON line
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def missing() -> list[str]:
    return [m for m in ("tensorflow", "tf_keras", "official")
            if importlib.util.find_spec(m) is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-id", default="a0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", type=int, default=172)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, str(ROOT / "tools"))
    import tf_reference

    shape = (1, args.frames, args.size, args.size, 3)
    model = tf_reference.build_model(args.model_id, False, 600, shape)
    checkpoint = tf.train.Checkpoint(model=model)
    ckpt_dir = args.out / "ckpt"
    check = args.out / "check.npz"
    if tf.train.latest_checkpoint(str(ckpt_dir)) is None:
        rng = np.random.default_rng(0)
        tf_reference.randomize_weights(model, rng)
        video = tf_reference.make_video(1, args.frames, args.size)  # [1, T, H, W, 3]
        tf_reference.calibrate_bn(model, lambda: model(video, training=False), rng)
        checkpoint.save(str(ckpt_dir / "ckpt"))
        np.savez(check, input=video, logits=model(video, training=False).numpy())
    else:
        checkpoint.restore(tf.train.latest_checkpoint(str(ckpt_dir))).expect_partial()

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    seconds = {}
    for batch in args.batches:
        clip = tf.random.uniform((batch, *shape[1:]), seed=1)
        forward(clip).numpy()  # warm-up (traces the graph)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            forward(clip).numpy()
            times.append(time.perf_counter() - start)
        seconds[batch] = statistics.median(times)
    print(json.dumps({"tensorflow": tf.__version__, "threads": args.threads,
                      "seconds": seconds, "checkpoint": str(ckpt_dir), "check": str(check)}))


if __name__ == "__main__":
    main()
