"""Whole-clip inference throughput on CPU: vidnets vs the peers, same weights.

Clips per second (``torch.inference_mode``, eval mode, float32, eager, plain user code:
``model(clip)`` on a contiguous clip) at each batch size and thread count:

* ``x3d_m`` (16x224x224) vs pytorchvideo 0.1.5's X3D-M (``create_x3d``), with
  pytorchvideo's weights (and random BN statistics) loaded into vidnets. Both run in this
  process, alternating call by call.
* ``movinet_a0_base`` (50x172x172, the registry clip) vs the official TF model
  (tf-models-official, TF CPU, ``tf.function``), run by ``benchmarks/peers/
  tf_movinet_base.py`` in a worker process per thread count (TensorFlow fixes its thread
  pools at start-up); vidnets loads that model's checkpoint and its logits are compared.
  The TF model takes ~14 s per clip on one thread here, so by default it runs at batch 1
  only (``--tf-batches 1 8`` for more).
* ``vov3d_m`` (16x224x224): no peer. The official VoV3D (youngwanLEE/VoV3D) is a fork of
  PySlowFast, not an installable package; vidnets' number is reported alone (with
  ``--plain``, against vidnets' own plain PyTorch path).

Each figure is the median of ``--repeats`` calls after one warm-up. Before timing, the logits
of every pair are compared. ``--plain`` also times vidnets with its fast CPU conv paths off
(``vidnets.layers.set_fast_depthwise(False)``).

    python benchmarks/clip_speed.py [--models x3d_m movinet_a0_base vov3d_m]
        [--batches 1 8] [--threads 1 2] [--repeats 2] [--plain] [--tf-batches 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.pytorchvideo_x3d import create_x3d, randomize_bn, vidnets_twin  # noqa: E402

import vidnets  # noqa: E402
from vidnets.deploy.bench import time_calls  # noqa: E402
from vidnets.layers import fast_depthwise  # noqa: E402

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4  # logits: max |difference| / max |peer|
NO_PEER = {"vov3d_m": "none (official code: a PySlowFast fork, not a package)"}


def clip_shape(name: str) -> tuple[int, int, int, int]:
    if name == "x3d_m":
        return (3, 16, 224, 224)  # pytorchvideo's X3D-M preset (its head pools for 224)
    return vidnets.model_config(name).input_shape


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(time_calls(fn, repeats, warmup=1))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def tf_worker(args, threads: int, out: Path) -> dict:
    cmd = [sys.executable, str(HERE / "peers" / "tf_movinet_base.py"), "--model-id", "a0",
           "--threads", str(threads), "--batches", *map(str, args.tf_batches),
           "--frames", "50", "--size", "172", "--repeats", str(args.tf_repeats),
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise SystemExit(f"TF worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["x3d_m", "movinet_a0_base", "vov3d_m"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--plain", action="store_true",
                        help="also time vidnets with its fast CPU conv paths off")
    parser.add_argument("--tf-batches", nargs="+", type=int, default=[1])
    parser.add_argument("--tf-repeats", type=int, default=1)
    parser.add_argument("--tf-dir", type=Path, default=Path(os.environ.get(
        "VIDNETS_CACHE", Path.home() / ".cache" / "vidnets")) / "bench" / "tf_movinet_a0_base",
        help="where the TF peer keeps its checkpoint (made once)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, eager, float32, inference_mode, eval; clips per second")

    torch.manual_seed(0)
    models, peers, tf_runs = {}, {}, {}
    for name in args.models:
        shape = clip_shape(name)
        check = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1))
        if name == "x3d_m":
            ref = randomize_bn(create_x3d(input_clip_length=shape[1], input_crop_size=shape[2],
                                          head_activation=None)).eval()
            model = vidnets_twin(ref, name).eval()
            with torch.inference_mode():
                err = relative(model(check).numpy(), ref(check).numpy())
            print(f"x3d_m vs pytorchvideo X3D-M, same weights: logits differ by {err:.1e}")
            if err > TOLERANCE:
                raise SystemExit("x3d_m logits differ from pytorchvideo's")
            peers[name] = ("pytorchvideo", ref)
        elif name == "movinet_a0_base":
            tf_runs[args.threads[0]] = run = tf_worker(args, args.threads[0], args.tf_dir)
            model = vidnets.create_model(name, weights=run["checkpoint"]).eval()
            record = np.load(run["check"])
            clip = torch.from_numpy(record["input"]).permute(0, 4, 1, 2, 3)
            with torch.inference_mode():
                err = relative(model(clip).numpy(), record["logits"])
            print(f"movinet_a0_base vs TF {run['tensorflow']} MoViNet-A0 base, same weights: "
                  f"logits differ by {err:.1e}")
            if err > TOLERANCE:
                raise SystemExit("movinet_a0_base logits differ from TF's")
            peers[name] = (f"TF {run['tensorflow']}", None)
        else:
            model = vidnets.create_model(name).eval()
            peers[name] = (None, None)
        models[name] = model

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        if "movinet_a0_base" in models and threads not in tf_runs:
            tf_runs[threads] = tf_worker(args, threads, args.tf_dir)
        for name, model in models.items():
            peer_name, peer = peers[name]
            for batch in args.batches:
                clip = torch.rand(batch, *clip_shape(name))
                runs = {"vidnets": lambda m=model, c=clip: fast_call(m, c, True)}
                if args.plain:
                    runs["plain"] = lambda m=model, c=clip: fast_call(m, c, False)
                if peer is not None:
                    runs["peer"] = lambda m=peer, c=clip: fast_call(m, c, True)
                with torch.inference_mode():
                    for fn in runs.values():
                        fn()  # warm-up
                    times = {key: [] for key in runs}
                    for _ in range(args.repeats):
                        for key, fn in runs.items():
                            start = time.perf_counter()
                            fn()
                            times[key].append(time.perf_counter() - start)
                rate = {key: batch / statistics.median(t) for key, t in times.items()}
                if name == "movinet_a0_base":
                    seconds = tf_runs[threads]["seconds"].get(str(batch))
                    if seconds is not None:
                        rate["peer"] = batch / seconds
                rows.append((name, peer_name or NO_PEER.get(name, "-"), batch, threads, rate))
                ratio = rate["vidnets"] / rate["peer"] if "peer" in rate else None
                print(f"  {name} batch {batch} {threads} thread(s): vidnets "
                      f"{rate['vidnets']:.2f}" + (f", plain {rate['plain']:.2f}" if "plain" in rate
                                                  else "")
                      + (f", peer {rate['peer']:.3f} ({ratio:.2f}x)" if ratio else ""), flush=True)

    print(f"\n| model | peer | batch | threads | vidnets clips/s |"
          f"{' vidnets plain |' if args.plain else ''} peer clips/s | vidnets / peer |")
    print(f"|---|---|---:|---:|---:|{'---:|' if args.plain else ''}---:|---:|")
    for name, peer_name, batch, threads, rate in rows:
        peer_rate = f"{rate['peer']:.3f}" if "peer" in rate else "-"
        ratio = f"{rate['vidnets'] / rate['peer']:.2f}x" if "peer" in rate else "-"
        plain = f" {rate['plain']:.2f} |" if args.plain else ""
        print(f"| {name} | {peer_name} | {batch} | {threads} | {rate['vidnets']:.2f} |{plain} "
              f"{peer_rate} | {ratio} |")


def fast_call(model: torch.nn.Module, clip: torch.Tensor, fast: bool) -> torch.Tensor:
    with fast_depthwise(fast):
        return model(clip)


if __name__ == "__main__":
    main()
