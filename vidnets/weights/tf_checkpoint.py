"""Pure-Python reader for TensorFlow V2 checkpoints (tensor bundles), without TensorFlow.

A checkpoint ``prefix`` is ``prefix.index`` (a LevelDB-format table mapping tensor names to
serialized ``BundleEntryProto`` messages) plus ``prefix.data-SSSSS-of-NNNNN`` shards holding the
raw tensor bytes.  Every block of the index and every tensor is verified with CRC-32C.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import struct
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or uses an unsupported feature."""


# --- CRC-32C (Castagnoli) --------------------------------------------------------------------
# Large buffers are split into 2**k equal lanes (zero-padded at the front, which leaves a
# zero-initialised CRC unchanged) that numpy advances one byte per step in parallel.  The lane
# registers are then merged pairwise with the GF(2)-linear "advance over n zero bytes" operator.
# This checks 80 MB in about one second.


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_TABLE = _crc_table()
_TABLE_LIST = _TABLE.tolist()
_BITS = np.arange(32, dtype=np.uint32)


def _apply(op: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """Apply a linear map on 32-bit registers, given as the images of the 32 basis bits."""
    return np.bitwise_xor.reduce(op * ((regs[:, None] >> _BITS) & 1), axis=-1)


@functools.lru_cache(maxsize=1024)
def _zeros_operator(n: int) -> np.ndarray:
    """The linear map advancing a (non-inverted) CRC register over ``n`` zero bytes."""
    if n == 1:
        basis = np.uint32(1) << _BITS
        return _TABLE[basis & 0xFF] ^ (basis >> 8)
    half = _zeros_operator(n // 2)
    op = _apply(half, half)
    return _apply(_zeros_operator(1), op) if n % 2 else op


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of ``data`` (same value as ``crc32c::Value`` in TensorFlow/LevelDB)."""
    n = len(data)
    if n < 64:
        crc = 0xFFFFFFFF
        for byte in bytes(data):
            crc = _TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    lanes = 1 << min(16, n.bit_length() // 2 + 2)
    pad = -n % lanes
    flat = np.zeros(n + pad, np.uint8)
    flat[pad:] = np.frombuffer(data, np.uint8)
    flat[pad : pad + 4] ^= 0xFF  # same effect as starting the register at 0xFFFFFFFF
    rows = flat.reshape(lanes, -1).T.copy()
    regs = np.zeros(lanes, np.uint32)
    index = np.empty(lanes, np.uint32)
    for row in rows:
        np.bitwise_xor(regs, row, out=index)
        index &= 0xFF
        regs >>= 8
        regs ^= _TABLE[index]
    length = rows.shape[0]
    while regs.size > 1:
        regs = _apply(_zeros_operator(length), regs[0::2]) ^ regs[1::2]
        length *= 2
    return int(regs[0]) ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Invert LevelDB/TensorFlow ``crc32c::Mask``, used for every stored checksum."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- protobuf messages (tensorflow/core/protobuf/tensor_bundle.proto and friends) -------------
# Only field numbers and wire types matter for decoding, so enums (DataType, Endianness) are
# declared as int32, TensorShapeProto.Dim is not nested, and TensorSliceProto stays raw bytes
# (we only need to know whether a tensor is partitioned).

_MESSAGES = {
    "VersionDef": [
        ("producer", 1, "int32"), ("min_consumer", 2, "int32"),
        ("bad_consumers", 3, "repeated int32"),
    ],
    "TensorShapeDim": [("size", 1, "int64"), ("name", 2, "string")],
    "TensorShapeProto": [("dim", 2, "repeated TensorShapeDim"), ("unknown_rank", 3, "bool")],
    "BundleHeaderProto": [
        ("num_shards", 1, "int32"), ("endianness", 2, "int32"), ("version", 3, "VersionDef")
    ],
    "BundleEntryProto": [
        ("dtype", 1, "int32"), ("shape", 2, "TensorShapeProto"), ("shard_id", 3, "int32"),
        ("offset", 4, "int64"), ("size", 5, "int64"), ("crc32c", 6, "fixed32"),
        ("slices", 7, "repeated bytes"),
    ],
}  # fmt: skip


def _message_classes() -> dict[str, type]:
    """Build message classes for ``_MESSAGES`` from a FileDescriptorProto made at runtime."""
    field_proto = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="vidnets/tf_tensor_bundle.proto", package="tensorflow", syntax="proto3"
    )
    for message, fields in _MESSAGES.items():
        descriptor = proto.message_type.add(name=message)
        for name, number, spec in fields:
            repeated, _, kind = spec.rpartition(" ")
            label = field_proto.LABEL_REPEATED if repeated else field_proto.LABEL_OPTIONAL
            field = descriptor.field.add(name=name, number=number, label=label)
            if kind in _MESSAGES:
                field.type, field.type_name = field_proto.TYPE_MESSAGE, f".tensorflow.{kind}"
            else:
                field.type = getattr(field_proto, f"TYPE_{kind.upper()}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{name}"))
        for name in _MESSAGES
    }


_PROTOS = _message_classes()
_BundleHeader, _BundleEntry = _PROTOS["BundleHeaderProto"], _PROTOS["BundleEntryProto"]

_DT_STRING, _DT_BFLOAT16 = 7, 14
_DTYPES = {  # tensorflow DataType enum -> numpy dtype
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
    8: np.complex64, 9: np.int64, 10: np.bool_, 17: np.uint16,
    18: np.complex128, 19: np.float16, 22: np.uint32, 23: np.uint64,
}  # fmt: skip


# --- LevelDB table format (tsl/lib/io/table_format.txt) ---------------------------------------

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a little-endian base-128 varint; return (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _block(data: bytes, handle: bytes, pos: int = 0) -> tuple[bytes, int]:
    """Read the block a BlockHandle points to; check its trailer. Return (block, next pos)."""
    offset, pos = _varint(handle, pos)
    size, pos = _varint(handle, pos)
    if offset + size + 5 > len(data):
        raise CheckpointError(f"block [{offset}, {offset + size}) runs past the end of the file")
    kind, masked = struct.unpack_from("<BI", data, offset + size)
    if kind != 0:
        raise CheckpointError(f"compressed blocks (type {kind}) are not supported")
    if unmask_crc(masked) != crc32c(data[offset : offset + size + 1]):
        raise CheckpointError(f"crc32c mismatch in block at offset {offset}")
    return data[offset : offset + size], pos


def _block_items(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode the prefix-compressed (key, value) entries of a block."""
    if len(block) < 4:
        raise CheckpointError("block too small")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 * (num_restarts + 1)
    items, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        items.append((key, block[pos : pos + size]))
        pos += size
    if pos != end:
        raise CheckpointError("malformed block entries")
    return items


def _read_table(path: Path) -> dict[bytes, bytes]:
    """Read every (key, value) pair of a LevelDB table file."""
    data = path.read_bytes()
    try:
        if len(data) < _FOOTER_SIZE:
            raise CheckpointError(f"file is {len(data)} bytes, shorter than the table footer")
        (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
        if magic != _TABLE_MAGIC:
            raise CheckpointError(f"bad table magic number {magic:#018x}")
        footer = data[-_FOOTER_SIZE:]
        _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
        index, _ = _block(data, footer, pos)
        return {
            key: value
            for _, handle in _block_items(index)
            for key, value in _block_items(_block(data, handle)[0])
        }
    except CheckpointError as err:
        raise CheckpointError(f"{path}: not a valid checkpoint index: {err}") from None


# --- checkpoint reader ------------------------------------------------------------------------


def _resolve_prefix(path: Path) -> Path:
    """Map a prefix, ``.index`` file, ``checkpoint`` state file or directory to a prefix."""
    if path.is_dir():
        if (path / "checkpoint").is_file():
            return _resolve_prefix(path / "checkpoint")
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            found = [p.name for p in indexes] or "none"
            raise CheckpointError(f"{path}: expected one checkpoint *.index file, found {found}")
        return indexes[0].with_suffix("")
    if path.suffix == ".index":
        return path.with_suffix("")
    if path.is_file():  # a `checkpoint` state file (text proto)
        match = re.search(r'^model_checkpoint_path:\s*"([^"]*)"', path.read_text(), re.M)
        if not match:
            raise CheckpointError(f"{path}: no model_checkpoint_path in checkpoint state file")
        prefix = path.parent / match.group(1)
        if not Path(f"{prefix}.index").exists():  # an absolute path from another machine
            prefix = path.parent / prefix.name
        return prefix
    return path


class TFCheckpointReader:
    """Random access to the tensors of a TensorFlow V2 checkpoint.

    ``path`` may be a checkpoint prefix, its ``.index`` file, a ``checkpoint`` state file, or
    a directory holding either.  bfloat16 tensors are returned as float32; string tensors as
    ``bytes`` (scalars) or object arrays of ``bytes``.  Partitioned (sliced) variables are not
    supported.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.prefix = _resolve_prefix(Path(path))
        index = Path(f"{self.prefix}.index")
        if not index.is_file():
            raise CheckpointError(f"{index}: checkpoint index file not found")
        table = _read_table(index)
        try:
            header = _BundleHeader.FromString(table.pop(b""))
            self._entries = {
                key.decode(): _BundleEntry.FromString(value)
                for key, value in table.items()
                if not key.startswith(b"\0")  # pieces of partitioned tensors
            }
        except (KeyError, DecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{index}: bad bundle header or entry ({err!r})") from None
        if header.endianness != 0:
            raise CheckpointError(f"{index}: big-endian checkpoints are not supported")
        self.num_shards = header.num_shards

    def keys(self) -> list[str]:
        """Names of all tensors, sorted."""
        return sorted(self._entries)

    def _entry(self, name: str):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{name!r} not found in checkpoint {self.prefix}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(dim.size for dim in self._entry(name).shape.dim)

    def dtype(self, name: str) -> np.dtype:
        """The numpy dtype ``read(name)`` returns."""
        code = self._entry(name).dtype
        if code == _DT_STRING:
            return np.dtype(object)
        if code == _DT_BFLOAT16:
            return np.dtype(np.float32)
        if code not in _DTYPES:
            raise CheckpointError(f"{self.prefix}: tensor {name!r} has unsupported dtype {code}")
        return np.dtype(_DTYPES[code])

    def read(self, name: str) -> np.ndarray | bytes:
        """Read, verify (size and crc32c) and decode one tensor."""
        entry, shape = self._entry(name), self.shape(name)
        if entry.slices:
            raise CheckpointError(f"{self.prefix}: partitioned tensor {name!r} is not supported")
        shard = Path(f"{self.prefix}.data-{entry.shard_id:05d}-of-{self.num_shards:05d}")
        if not shard.is_file():
            raise CheckpointError(f"{shard}: data shard not found (needed for {name!r})")
        raw = bytearray(entry.size)
        with open(shard, "rb") as f:
            f.seek(entry.offset)
            got = f.readinto(raw)
        if got != entry.size:
            raise CheckpointError(
                f"{shard}: truncated; tensor {name!r} needs bytes "
                f"[{entry.offset}, {entry.offset + entry.size}) but only {got} are there"
            )
        if entry.dtype == _DT_STRING:
            strings, crc = _decode_strings(raw, math.prod(shape), f"{shard}: tensor {name!r}")
            value = np.empty(len(strings), object)
            value[:] = strings
        else:
            crc = crc32c(raw)
            value = _decode_numbers(raw, entry.dtype, shape, f"{shard}: tensor {name!r}")
        if crc != unmask_crc(entry.crc32c):
            raise CheckpointError(f"{shard}: crc32c mismatch for tensor {name!r} (data corrupt)")
        return value[0] if entry.dtype == _DT_STRING and shape == () else value.reshape(shape)

    def read_all(self) -> dict[str, np.ndarray | bytes]:
        return {name: self.read(name) for name in self.keys()}


def _decode_numbers(raw: bytearray, code: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Interpret raw little-endian tensor bytes; bfloat16 is widened to float32."""
    if code not in _DTYPES and code != _DT_BFLOAT16:
        raise CheckpointError(f"{what} has unsupported TensorFlow dtype {code}")
    storage = np.dtype(np.uint16 if code == _DT_BFLOAT16 else _DTYPES[code])
    if len(raw) != math.prod(shape) * storage.itemsize:
        raise CheckpointError(f"{what} has {len(raw)} bytes, not the {storage} size of {shape}")
    value = np.frombuffer(raw, storage)
    if code == _DT_BFLOAT16:
        value = (value.astype(np.uint32) << 16).view(np.float32)
    return value


def _decode_strings(raw: bytearray, count: int, what: str) -> tuple[list[bytes], int]:
    """Decode a DT_STRING tensor: varint lengths, masked crc32c of the lengths, string bytes.

    Also returns the checksum TensorFlow stores for such an entry: the crc32c of the lengths
    as little-endian uint32 (uint64 when larger), the length checksum and the string bytes.
    """
    lengths, pos = [], 0
    try:
        for _ in range(count):
            length, pos = _varint(raw, pos)
            lengths.append(length)
    except CheckpointError:
        raise CheckpointError(f"{what}: string lengths are truncated") from None
    packed = b"".join(struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n) for n in lengths)
    checksum, body = bytes(raw[pos : pos + 4]), bytes(raw[pos + 4 :])
    if len(checksum) < 4 or len(body) != sum(lengths):
        raise CheckpointError(f"{what}: string data does not match its lengths")
    if unmask_crc(int.from_bytes(checksum, "little")) != crc32c(packed):
        raise CheckpointError(f"{what}: crc32c mismatch in string lengths (data corrupt)")
    starts = itertools.accumulate(lengths, initial=0)
    strings = [body[a:b] for a, b in itertools.pairwise(starts)]
    return strings, crc32c(packed + checksum + body)


def read_tf_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray | bytes]:
    """Read every tensor of a TensorFlow V2 checkpoint into numpy arrays."""
    return TFCheckpointReader(path).read_all()
