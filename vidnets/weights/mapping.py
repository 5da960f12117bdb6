"""What every converter of official weights ends with: a complete, checked state dict."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..layers import State


def complete_state(state: State, model: torch.nn.Module, source: str, *,
                   unused: Sequence[str] = (), missing: Sequence[str] | None = None) -> State:
    """Check ``state`` against ``model`` and return it in the model's shapes.

    BatchNorm ``num_batches_tracked`` counters absent from the source are zero-filled
    (inference never reads them). Anything else left over on either side, or of the
    wrong size, raises a ``ValueError`` naming ``source`` and listing the names.
    ``missing`` defaults to the model tensors not in ``state``.
    """
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state and key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(tensor.shape, dtype=tensor.dtype)
    if missing is None:
        missing = sorted(set(own) - set(state))
    bad_shapes = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and v.numel() != own[k].numel()]
    if unused or missing or bad_shapes:
        lines = [f"{source} does not match {type(model).__name__} with {len(own)} tensors:"]
        for title, items in (("checkpoint tensors not used", unused),
                             ("model tensors not in the checkpoint", missing),
                             ("shape mismatches", bad_shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:8])
                             + (" ..." if len(items) > 8 else ""))
        raise ValueError("\n".join(lines))
    return {k: v.reshape(own[k].shape) for k, v in state.items()}
