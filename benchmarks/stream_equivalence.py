"""Max |streamed - whole clip| logits for every stream model (float32).

Random weights with random BatchNorm statistics and non-zero residual scales; the
clip is fed frame by frame and in uneven chunks.

    python benchmarks/stream_equivalence.py [--frames 16] [--size 64]
"""

from __future__ import annotations

import argparse

import torch

import vidnets
from vidnets.layers import State

CHUNKINGS = {"1 frame": [1], "3 frames": [3], "8 frames": [8], "uneven": [2, 5, 1, 3]}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.uniform_(0.3, 1.0, generator=g)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1, generator=g)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def stream(model: vidnets.VideoClassifier, clip: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    b, _, t, h, w = clip.shape
    state: State = model.init_state(b, h, w)
    start, i = 0, 0
    while start < t:
        size = sizes[i % len(sizes)]
        logits, state = model.stream_step(clip[:, :, start:start + size], state)
        start, i = start + size, i + 1
    return logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    clip = torch.rand(2, 3, args.frames, args.size, args.size)
    print(f"{'model':<20}" + "".join(f"{k:>12}" for k in CHUNKINGS) + f"{'|logits| std':>14}")
    for name in vidnets.list_models("_stream"):
        model = randomize(vidnets.create_model(name))
        with torch.inference_mode():
            whole = model(clip)
            diffs = [(stream(model, clip, s) - whole).abs().max().item()
                     for s in CHUNKINGS.values()]
        print(f"{name:<20}" + "".join(f"{d:>12.2e}" for d in diffs) + f"{whole.std():>14.3f}")


if __name__ == "__main__":
    main()
