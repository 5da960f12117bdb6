"""X3D-M training step on CPU: vidnets vs pytorchvideo 0.1.5, same weights, same gradients.

One step: forward, cross-entropy, backward (``--sgd``: and an SGD update), training mode,
batch 2 of 16x224x224 clips, float32, eager. Both models run in this process, alternating
step by step (so a busy machine slows both alike); the time is the median wall time of
``--repeats`` steps after one warm-up step each, at every ``--threads`` setting.

Before timing, pytorchvideo's weights are loaded into vidnets' ``x3d_m`` and the two are
checked to give the same logits, input gradient and gradient of every parameter (BatchNorm
with random running statistics, eval mode: with batch statistics a freshly initialised
X3D's float32 gradients are ill-conditioned and differ by ~1% between two float32 runs of
the same plain implementation, see ``tests/models/test_x3d_gradients.py``).

vidnets' speed comes from its CPU conv paths (``vidnets/layers/depthwise.py``): depthwise
3D convs in channels-last with their own backward, 1x1x1 convs as matrix products.
``--plain`` also times vidnets with them switched off (``set_fast_depthwise(False)``).

    python benchmarks/x3d_train_step.py [--threads 1 2] [--repeats 3] [--plain] [--sgd]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.pytorchvideo_x3d import create_x3d, randomize_bn, vidnets_twin  # noqa: E402

from vidnets.layers import fast_depthwise  # noqa: E402
from vidnets.weights.x3d import PYTORCHVIDEO, official_name  # noqa: E402

# max |difference| / max |reference|, per tensor. pytorchvideo's own float32 gradients are
# that far from float64 (input gradient at 16x112x112: 7.7e-5; vidnets': 1.4e-6).
TOLERANCE = 1e-3


def gradients(model, clip, labels):
    model.zero_grad(set_to_none=True)
    clip = clip.clone().requires_grad_()
    logits = model(clip)
    F.cross_entropy(logits, labels).backward()
    return logits.detach(), clip.grad, {n: p.grad for n, p in model.named_parameters()}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check_gradients(ref, model, clip, labels) -> float:
    """Worst relative difference over logits, input gradient and parameter gradients."""
    randomize_bn(ref).eval()
    model.load_state_dict(vidnets_twin(ref, "x3d_m").state_dict())
    model.eval()
    ref_logits, ref_input, ref_grads = gradients(ref, clip, labels)
    logits, grad_input, grads = gradients(model, clip, labels)
    errors = {"logits": relative(logits, ref_logits), "input": relative(grad_input, ref_input)}
    stages = len(model.stages)
    for name, grad in grads.items():
        expected = ref_grads[official_name(name, PYTORCHVIDEO, stages)]
        errors[name] = relative(grad.reshape(expected.shape), expected)
    worst = max(errors, key=errors.get)
    param = max(grads, key=errors.get)
    print(f"same weights, eval-mode BN, max |vidnets - pytorchvideo| / max |pytorchvideo|: "
          f"logits {errors['logits']:.1e}, input gradient {errors['input']:.1e}, worst of "
          f"{len(grads)} parameter gradients {errors[param]:.1e} ({param})")
    if errors[worst] > TOLERANCE:
        raise SystemExit(f"gradients differ: {worst} {errors[worst]:.2e} > {TOLERANCE}")
    return errors[worst]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--plain", action="store_true",
                        help="also time vidnets with its fast CPU paths off")
    parser.add_argument("--sgd", action="store_true", help="include an SGD update")
    parser.add_argument("--no-check", action="store_true", help="skip the gradient check")
    args = parser.parse_args()

    torch.manual_seed(0)
    ref = create_x3d(input_clip_length=args.frames, input_crop_size=args.size,
                     head_activation=None).train()
    model = vidnets_twin(ref, "x3d_m")
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size,
                       generator=torch.Generator().manual_seed(1))
    labels = torch.arange(args.batch) * 7 % 400
    print(f"torch {torch.__version__}, X3D-M training step, batch {args.batch}, "
          f"{args.frames}x{args.size}x{args.size}, float32, eager")
    if not args.no_check:
        torch.set_num_threads(max(args.threads))
        check_gradients(ref, model, clip, labels)
        model.load_state_dict(vidnets_twin(ref, "x3d_m").state_dict())

    runners = {"pytorchvideo": (ref, True), "vidnets": (model, True)}
    if args.plain:
        runners["vidnets (fast paths off)"] = (model, False)
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
                  for name, (m, _) in runners.items()}

    def step(name: str) -> float:
        m, fast = runners[name]
        m.train()
        start = time.perf_counter()
        with fast_depthwise(fast):
            m.zero_grad(set_to_none=True)
            F.cross_entropy(m(clip), labels).backward()
            if args.sgd:
                optimizers[name].step()
        return time.perf_counter() - start

    header = f"{'threads':>7}  " + "  ".join(f"{n:>26}" for n in runners) + \
        f"  {'speed-up vs pytorchvideo':>25}"
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = {name: [] for name in runners}
        for name in runners:
            step(name)  # warm-up
        for _ in range(args.repeats):
            for name in runners:
                times[name].append(step(name))
        median = {name: statistics.median(t) for name, t in times.items()}
        speedup = median["pytorchvideo"] / median["vidnets"]
        rows.append(f"{threads:>7}  " + "  ".join(f"{median[n]:>24.2f} s" for n in runners)
                    + f"  {speedup:>24.2f}x")
        print(f"  {threads} thread(s): " + ", ".join(
            f"{n} {' '.join(f'{t:.2f}' for t in ts)}" for n, ts in times.items()), flush=True)
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
