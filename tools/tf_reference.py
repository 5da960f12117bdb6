"""Reference checkpoints and logits from the official TF MoViNet models.

Builds ``official.projects.movinet`` models exactly as the official README does,
gives them non-trivial random weights (random ReZero / positional-encoding
scales, biases and BN affines, BN statistics calibrated on real activations),
saves them the way the release does and records their logits, so that a port
can be checked against them.

For every model NAME (``a0_base``, ``a3_stream``, ``a0_base_k400``, ...)::

    OUT/NAME/{checkpoint,ckpt-1.index,ckpt-1.data-00000-of-00001}
    OUT/NAME.tar.gz          top-level directory NAME/, like the release archive
    OUT/NAME.npz             input, logits_clip, [logits_frames], metadata
    OUT/NAME.variables.txt   checkpoint key, shape, readable alias

Example::

    python tools/tf_reference.py --models a0_base a0_stream --out /tmp/tfref
"""

import argparse
import gzip
import os
import re
import shutil
import tarfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from official.projects.movinet.modeling import (  # noqa: E402
    movinet,
    movinet_layers,
    movinet_model,
)

MODEL_IDS = ("a0", "a1", "a2", "a3", "a4", "a5")
NAME_RE = re.compile(r"^(a[0-5])_(base|stream)(_k400)?$")


def parse_name(name, num_classes):
    """Splits ``a3_stream_k400`` into (model_id, is_stream, num_classes)."""
    match = NAME_RE.match(name)
    if not match:
        raise SystemExit(f"bad model name {name!r}; expected e.g. a0_base, a3_stream_k400")
    return match[1], match[2] == "stream", 400 if match[3] else num_classes


def build_model(model_id, stream, num_classes, input_shape, conv_type="2plus1d"):
    """Builds the classifier exactly as in the official README."""
    if stream:
        backbone = movinet.Movinet(
            model_id=model_id,
            causal=True,
            conv_type=conv_type,
            se_type="2plus3d",
            activation="hard_swish",
            gating_activation="hard_sigmoid",
            use_positional_encoding=model_id in {"a3", "a4", "a5"},
            use_external_states=True,
        )
    else:
        backbone = movinet.Movinet(model_id=model_id, causal=False, use_external_states=False)
    model = movinet_model.MovinetClassifier(backbone, num_classes=num_classes, output_states=stream)
    model.build(input_shape)
    return model


def make_video(seed, frames, size):
    """Smooth random video in [0, 1]: coarse noise, drifting gratings, pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, (frames // 4 + 2, 6, 6, 3)).astype(np.float32)
    coarse = tf.image.resize(coarse, (size, size), method="bilinear").numpy()
    pos = np.linspace(0.0, len(coarse) - 1.0, frames)
    lo = np.minimum(pos.astype(int), len(coarse) - 2)
    frac = (pos - lo)[:, None, None, None]
    smooth = (1.0 - frac) * coarse[lo] + frac * coarse[lo + 1]

    t = np.arange(frames)[:, None, None, None]
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    k = rng.uniform(-6.0, 6.0, (2, 3))
    phase = rng.uniform(0.0, 2 * np.pi, 3)
    speed = rng.uniform(0.3, 1.0, 3)
    grating = np.sin(2 * np.pi * (k[0] * y[..., None] + k[1] * x[..., None]) + speed * t + phase)
    noise = rng.normal(0.0, 0.03, smooth.shape)
    video = 0.15 + 0.6 * smooth + 0.15 * grating + noise
    return np.clip(video, 0.0, 1.0).astype(np.float32)[None]


def randomize_weights(model, rng):
    """Replaces the default init (zero scales and biases) with random values.

    Kernels are He-normal with the fan-in computed per output channel (so
    depthwise kernels are not tiny); kernels followed by BN get an extra random
    gain in [0.25, 1] so BN inputs have varied variances (makes epsilon matter).
    BN moving statistics are left for ``calibrate_bn``.
    """
    bn_kernels = {
        id(w)
        for block in model.submodules
        if isinstance(block, movinet_layers.ConvBlock) and block.get_config()["use_batch_norm"]
        for w in block.weights
        if "kernel" in w.name
    }
    for w in model.weights:
        leaf = w.name.split("/")[-1].split(":")[0]
        shape = tuple(w.shape)
        if not shape:  # ReZero / positional-encoding scale, zero by default
            value = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("beta", "bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif leaf in ("kernel", "depthwise_kernel"):
            fan_in = np.prod(shape[:-2]) * (1 if leaf == "depthwise_kernel" else shape[-2])
            gain = 4 ** rng.uniform(-1.0, 0.0) if id(w) in bn_kernels else 1.0
            value = rng.normal(0.0, gain * np.sqrt(2.0 / fan_in), shape)
        elif leaf in ("moving_mean", "moving_variance"):
            continue
        else:
            raise ValueError(f"unexpected variable {w.name} {shape}")
        w.assign(np.asarray(value, np.float32))


def calibrate_bn(model, run, rng):
    """Sets BN moving stats from the batch stats of their real inputs, jittered.

    During one inference pass (``run``) every BN layer, when first reached,
    takes mean/variance of its input, sets ``moving_variance = var * U(0.5, 2)``
    and ``moving_mean = mean + N(0, 0.1 * std)``, then normalises with them, so
    downstream layers are calibrated on already-jittered upstream statistics.
    """
    bns = [m for m in model.submodules if isinstance(m, tf_keras.layers.BatchNormalization)]
    done = set()

    def calibrating(layer, call):
        def wrapped(inputs, *args, **kwargs):
            if id(layer) not in done:
                done.add(id(layer))
                mean, var = tf.nn.moments(inputs, list(range(inputs.shape.rank - 1)))
                var = var.numpy()
                std = np.sqrt(var)
                layer.moving_variance.assign(var * rng.uniform(0.5, 2.0, var.shape))
                layer.moving_mean.assign(mean + rng.normal(0.0, 0.1, var.shape) * std)
            return call(inputs, *args, **kwargs)

        return wrapped

    for layer in bns:
        layer.call = calibrating(layer, layer.call)
    try:
        run()
    finally:
        for layer in bns:
            del layer.call
    if len(done) != len(bns):
        raise RuntimeError(f"calibrated {len(done)} of {len(bns)} BN layers")


def logits_clip(model, video, stream, training=False):
    """Logits for the whole clip in one call (stream models: from zero states)."""
    video = tf.constant(video)
    if not stream:
        return model(video, training=training).numpy()
    states = model.init_states(tf.shape(video))
    logits, _ = model({**states, "image": video}, training=training)
    return logits.numpy()


def logits_frames(model, video):
    """Per-frame logits [T, B, N], carrying states as in the README loop."""
    video = tf.constant(video)
    states = model.init_states(tf.shape(video))
    outputs = []
    for frame in tf.split(video, video.shape[1], axis=1):
        logits, states = model({**states, "image": frame})
        outputs.append(logits.numpy())
    return np.stack(outputs)


def variable_table(root, ckpt_path):
    """Lines ``key<TAB>shape<TAB>alias`` for every variable of the checkpoint.

    The alias is the key with ``layer_with_weights-N`` replaced by the Keras
    layer name (e.g. ``model/movinet/block1_layer0/...``); found with the same
    breadth-first traversal the checkpoint writer uses.
    """
    aliases, seen, queue = {}, {id(root)}, [(root, (), ())]
    while queue:
        obj, path, alias = queue.pop(0)
        for edge, child in tf.train.TrackableView.children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            named = re.match(r"layer(_with_weights)?-\d+$", edge) and isinstance(
                child, tf_keras.layers.Layer
            )
            child_path = (*path, edge)
            child_alias = (*alias, child.name if named else edge)
            if isinstance(child, tf.Variable):
                key = "/".join(child_path) + "/.ATTRIBUTES/VARIABLE_VALUE"
                aliases[key] = "/".join(child_alias)
            queue.append((child, child_path, child_alias))
    listed = dict(tf.train.list_variables(ckpt_path))
    missing = set(aliases) - set(listed)
    if missing:
        raise RuntimeError(f"aliases not in checkpoint: {sorted(missing)[:5]}")
    return [f"{k}\t{list(s)}\t{aliases.get(k, '-')}" for k, s in sorted(listed.items())]


def _reset_tarinfo(info):
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def save_release(model, out, name):
    """Writes OUT/NAME/ckpt-1.* and OUT/NAME.tar.gz (reproducible archive)."""
    ckpt_dir = out / name
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_path = tf.train.Checkpoint(model=model).save(str(ckpt_dir / "ckpt"))
    archive = out / f"{name}.tar.gz"
    with (
        gzip.GzipFile(archive, "wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.add(ckpt_dir, arcname=name, filter=_reset_tarinfo)
    return ckpt_path, archive


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def check_sensitivity(spec, ckpt_path, video, other_video, reference):
    """Reloads the checkpoint into a fresh model and measures deliberate mistakes."""
    model = build_model(*spec)
    tf.train.Checkpoint(model=model).restore(ckpt_path).assert_existing_objects_matched()
    stream = spec[1]
    bns = [m for m in model.submodules if isinstance(m, tf_keras.layers.BatchNormalization)]
    diffs = {"reload": max_diff(logits_clip(model, video, stream), reference)}
    diffs["other_input"] = max_diff(logits_clip(model, other_video, stream), reference)
    for layer in bns:
        layer.epsilon = 1e-5
    diffs["norm_epsilon_1e-5"] = max_diff(logits_clip(model, video, stream), reference)
    for layer in bns:
        layer.epsilon = 1e-3
    if stream:  # last frame alone, i.e. states not carried over
        last = video[:, -1:]
        states = model.init_states(tf.shape(last))
        logits, _ = model({**states, "image": tf.constant(last)})
        diffs["frames_without_states"] = max_diff(logits, reference)
    # Last: training=True also updates the (throw-away) moving statistics.
    diffs["bn_training_true"] = max_diff(
        logits_clip(model, video, stream, training=True), reference
    )
    return diffs


def make_reference(name, args, video, other_video):
    """Builds, randomises, saves and records one model; returns a summary dict."""
    start = time.time()
    model_id, stream, num_classes = parse_name(name, args.num_classes)
    conv_type = args.conv_type if stream else "3d"
    if stream and conv_type != "2plus1d":
        name = f"{name}_{conv_type}"
    spec = (model_id, stream, num_classes, video.shape, conv_type)
    tf_keras.backend.clear_session()  # reproducible Keras layer names in the aliases
    model = build_model(*spec)
    rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
    randomize_weights(model, rng)
    # Calibrated on the reference input itself: every BN sees O(1) statistics there.
    calibrate_bn(model, lambda: logits_clip(model, video, stream), rng)
    # Scale the final (linear) classifier so the reference logits have std 1.
    scale = 1.0 / logits_clip(model, video, stream).std()
    (head,) = [m for m in model.layers if isinstance(m, movinet_layers.ClassifierHead)]
    for w in head.weights:
        if "/classifier/" in w.name:
            w.assign(w * scale)

    clip = logits_clip(model, video, stream)
    record = dict(
        input=video,
        logits_clip=clip,
        num_classes=num_classes,
        model_id=model_id,
        causal=stream,
        conv_type=conv_type,
        use_positional_encoding=stream and model_id in {"a3", "a4", "a5"},
        seed=args.seed,
    )
    summary = {"logits_std": float(clip.std()), "finite": bool(np.isfinite(clip).all())}
    if stream:
        record["logits_frames"] = logits_frames(model, video)
        summary["frames_vs_clip"] = max_diff(record["logits_frames"][-1], clip)

    ckpt_path, archive = save_release(model, args.out, name)
    np.savez(args.out / f"{name}.npz", **record)
    table = variable_table(tf.train.Checkpoint(model=model), ckpt_path)
    (args.out / f"{name}.variables.txt").write_text("\n".join(table) + "\n")
    summary["archive_mb"] = archive.stat().st_size / 2**20
    summary["seconds"] = time.time() - start
    if args.check_sensitivity:
        summary.update(check_sensitivity(spec, ckpt_path, video, other_video, clip))
        summary["check_seconds"] = time.time() - start - summary["seconds"]
    return name, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["a0_base", "a0_stream"],
        help="names like a0_base, a3_stream, a0_base_k400, or 'all'",
    )
    parser.add_argument("--num-classes", type=int, default=600)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=172)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--conv-type",
        choices=["2plus1d", "3d_2plus1d"],
        default="2plus1d",
        help="stream models only",
    )
    parser.add_argument(
        "--check-sensitivity",
        action="store_true",
        help="reload the checkpoint and show that mistakes move logits",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)
    names = args.models
    if names == ["all"]:
        names = [f"{m}_{kind}" for m in MODEL_IDS for kind in ("base", "stream")]
    for name in names:
        parse_name(name, args.num_classes)
    args.out.mkdir(parents=True, exist_ok=True)

    video = make_video(args.seed, args.frames, args.size)
    other_video = make_video(args.seed + 1, args.frames, args.size)
    for name in names:
        name, summary = make_reference(name, args, video, other_video)
        print(
            name,
            " ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
