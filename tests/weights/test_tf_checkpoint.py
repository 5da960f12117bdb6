"""The pure-Python TF checkpoint reader, checked against checkpoints written by TensorFlow."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidnets.weights.tf_checkpoint import (
    CheckpointError,
    TFCheckpointReader,
    crc32c,
    read_tf_checkpoint,
    unmask_crc,
)


def reference_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("size", [0, 1, 3, 4, 63, 64, 65, 1000, 4099, 65_537])
def test_crc32c_matches_bitwise_reference(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == reference_crc32c(data)


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    crc = 0x12345678
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert unmask_crc(masked) == crc


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def variables_ckpt(tf, tmp_path_factory) -> Path:
    """Many dtypes and shapes, a >1 MB tensor, and enough keys for a multi-block index."""
    rng = np.random.default_rng(0)
    ckpt = tf.train.Checkpoint(
        kernel=tf.Variable(rng.standard_normal((3, 3, 8, 16)).astype(np.float32)),
        bias=tf.Variable(rng.standard_normal(16).astype(np.float32)),
        big=tf.Variable(rng.standard_normal((600, 600)).astype(np.float32)),
        scalar=tf.Variable(2.5),
        counter=tf.Variable(123_456_789_012, dtype=tf.int64),
        half=tf.Variable(rng.standard_normal((2, 5)).astype(np.float16)),
        double=tf.Variable(rng.standard_normal(4)),
        ints=tf.Variable(np.arange(6, dtype=np.int32).reshape(2, 3)),
        flags=tf.Variable([True, False, True]),
        bf16=tf.Variable(tf.constant([1.5, -2.25, 3e10], dtype=tf.bfloat16)),
        words=tf.Variable([b"alpha", b"", b"\x00\xff" * 100]),
        many=[tf.Variable(np.full(4, i, np.float32)) for i in range(300)],
    )
    return Path(ckpt.write(str(tmp_path_factory.mktemp("vars") / "ckpt")))


@pytest.fixture(scope="module")
def sharded_ckpt(tf, tmp_path_factory) -> Path:
    """A 2-shard checkpoint: a TF1 sharded Saver with variables on two CPU devices."""
    prefix = tmp_path_factory.mktemp("sharded") / "model"
    with tf.Graph().as_default():
        for device, (name, value) in enumerate(
            {"w": np.arange(100, dtype=np.float32).reshape(10, 10), "step": np.int64(42)}.items()
        ):
            with tf.device(f"/cpu:{device}"):
                tf.compat.v1.get_variable(name, initializer=value)
        saver = tf.compat.v1.train.Saver(sharded=True)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
        with tf.compat.v1.Session(config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix))
    assert len(list(prefix.parent.glob("model.data-*-of-00002"))) == 2
    return prefix


@pytest.fixture(scope="module")
def keras_ckpt(tf, tmp_path_factory) -> Path:
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(4, 3, input_shape=(8, 8, 3)),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(5),
        ]
    )
    model(np.ones((1, 8, 8, 3), np.float32))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), tmp_path_factory.mktemp("keras"), max_to_keep=1
    )
    return Path(manager.save())


def assert_matches_tensorflow(tf, prefix: Path) -> None:
    expected = tf.train.load_checkpoint(str(prefix))
    names = expected.get_variable_to_shape_map()
    actual = read_tf_checkpoint(prefix)
    reader = TFCheckpointReader(prefix)
    assert sorted(actual) == sorted(names) == reader.keys()
    for name, value in actual.items():
        want = expected.get_tensor(name)
        if isinstance(value, bytes):
            assert value == want, name
            continue
        assert reader.shape(name) == value.shape == tuple(names[name]), name
        assert reader.dtype(name) == value.dtype, name
        if str(want.dtype) == "bfloat16":
            want = want.astype(np.float32)
        assert value.dtype == want.dtype, name
        assert value.tolist() == want.tolist(), name


def test_variables_match_tensorflow(tf, variables_ckpt):
    assert_matches_tensorflow(tf, variables_ckpt)
    values = read_tf_checkpoint(variables_ckpt)
    assert values["words/.ATTRIBUTES/VARIABLE_VALUE"].tolist() == [b"alpha", b"", b"\0\xff" * 100]
    assert values["counter/.ATTRIBUTES/VARIABLE_VALUE"] == 123_456_789_012
    assert values["big/.ATTRIBUTES/VARIABLE_VALUE"].nbytes > 2**20
    assert isinstance(values["_CHECKPOINTABLE_OBJECT_GRAPH"], bytes)


def test_two_shards_match_tensorflow(tf, sharded_ckpt):
    assert TFCheckpointReader(sharded_ckpt).num_shards == 2
    assert_matches_tensorflow(tf, sharded_ckpt)


def test_keras_model_names(tf, keras_ckpt):
    assert_matches_tensorflow(tf, keras_ckpt)
    keys = TFCheckpointReader(keras_ckpt.parent).keys()  # the directory, via `checkpoint`
    assert "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert "model/layer_with_weights-1/moving_variance/.ATTRIBUTES/VARIABLE_VALUE" in keys


def test_path_forms(variables_ckpt, tmp_path):
    prefix = variables_ckpt
    assert TFCheckpointReader(str(prefix)).prefix == prefix
    assert TFCheckpointReader(f"{prefix}.index").prefix == prefix
    assert TFCheckpointReader(prefix.parent).prefix == prefix  # single *.index, no state file
    moved = tmp_path / "moved"
    shutil.copytree(prefix.parent, moved)
    state = moved / "checkpoint"
    state.write_text(f'model_checkpoint_path: "/elsewhere/{prefix.name}"\n')
    assert TFCheckpointReader(state).prefix == moved / prefix.name
    assert TFCheckpointReader(moved).prefix == moved / prefix.name


@pytest.fixture
def ckpt_copy(variables_ckpt, tmp_path) -> Path:
    shutil.copytree(variables_ckpt.parent, tmp_path, dirs_exist_ok=True)
    return tmp_path / variables_ckpt.name


def data_file(prefix: Path) -> Path:
    return prefix.with_name(f"{prefix.name}.data-00000-of-00001")


def test_missing_index(tmp_path):
    with pytest.raises(CheckpointError, match="index file not found"):
        TFCheckpointReader(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="expected one checkpoint"):
        TFCheckpointReader(tmp_path)


def test_missing_shard(sharded_ckpt, tmp_path):
    shutil.copytree(sharded_ckpt.parent, tmp_path, dirs_exist_ok=True)
    (tmp_path / "model.data-00001-of-00002").unlink()
    reader = TFCheckpointReader(tmp_path / "model")
    with pytest.raises(CheckpointError, match=r"model\.data-00001-of-00002: data shard not found"):
        reader.read_all()


def test_truncated_data(ckpt_copy):
    data = data_file(ckpt_copy)
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(CheckpointError, match="truncated") as err:
        read_tf_checkpoint(ckpt_copy)
    assert str(data) in str(err.value)


def test_corrupt_byte_in_data(ckpt_copy):
    data = data_file(ckpt_copy)
    reader = TFCheckpointReader(ckpt_copy)
    with open(data, "r+b") as f:  # the 1.44 MB tensor covers the middle of the file
        f.seek(data.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))
    with pytest.raises(CheckpointError, match="crc32c mismatch for tensor 'big/"):
        reader.read("big/.ATTRIBUTES/VARIABLE_VALUE")
    assert reader.read("scalar/.ATTRIBUTES/VARIABLE_VALUE") == 2.5


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: os.urandom(len(raw)), "bad table magic"),
        (lambda raw: raw[-20:], "shorter than the table footer"),
        (lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], "crc32c mismatch in block"),
    ],
)
def test_damaged_index(ckpt_copy, damage, message):
    index = ckpt_copy.with_name(f"{ckpt_copy.name}.index")
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as err:
        TFCheckpointReader(ckpt_copy)
    assert str(index) in str(err.value)


def test_partitioned_variable_is_reported(tf, tmp_path):
    policy = getattr(tf.train.experimental, "MaxShardSizePolicy", None)
    if policy is None:
        pytest.skip("this TensorFlow cannot write size-limited shards")
    rng = np.random.default_rng(1)
    ckpt = tf.train.Checkpoint(
        a=tf.Variable(rng.standard_normal((300, 400)).astype(np.float32)),
        b=tf.Variable(rng.standard_normal((300, 400)).astype(np.float32)),
    )
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy(500_000))
    reader = TFCheckpointReader(ckpt.write(str(tmp_path / "ckpt"), options=options))
    expected = tf.train.load_checkpoint(str(tmp_path / "ckpt"))
    assert reader.keys() == sorted(expected.get_variable_to_shape_map())
    with pytest.raises(CheckpointError, match="partitioned tensor 'b/"):
        reader.read("b/.ATTRIBUTES/VARIABLE_VALUE")
