"""Reads PyTorch's legacy (pre-1.6, non-zip) checkpoint format with numpy
alone, so the kit needs no torch install.

The format is a run of pickles: magic number, protocol version, system
info, the object itself (tensors refer to storages by persistent id), the
list of storage keys, and then each storage's raw bytes preceded by its
element count.
"""

import pickle
import struct
from collections import OrderedDict

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        if name not in _STORAGE_DTYPES:
            raise ValueError(f"unsupported torch storage type {name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _StorageRef:
    def __init__(self, key, dtype, size):
        self.key, self.dtype, self.size = key, dtype, size


class _LazyTensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def _rebuild_tensor_v2(storage, offset, shape, stride, *_ignored):
    return _LazyTensor(storage, offset, shape, stride)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        return _StorageRef(key, storage_type.dtype, size)


def load(path):
    """Returns the checkpoint's state dict as {name: np.ndarray}."""
    with open(path, "rb") as f:
        if pickle.load(f) != MAGIC:
            raise ValueError(f"{path}: not a legacy torch checkpoint (bad magic number)")
        if pickle.load(f) != PROTOCOL:
            raise ValueError(f"{path}: unsupported torch checkpoint protocol")
        pickle.load(f)  # system info
        obj = _Unpickler(f).load()
        keys = pickle.load(f)
        storages = {}
        refs = {}
        for t in _tensors(obj):
            refs[t.storage.key] = t.storage
        for key in keys:
            ref = refs.get(key)
            (count,) = struct.unpack("<q", f.read(8))
            dtype = ref.dtype if ref else np.dtype(np.float32)
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            storages[key] = np.frombuffer(data, dtype=dtype)
    return {name: _materialize(t, storages) for name, t in obj.items()}


def _tensors(obj):
    for v in obj.values():
        if isinstance(v, _LazyTensor):
            yield v


def _materialize(t, storages):
    flat = storages[t.storage.key]
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=t.shape, strides=tuple(s * item for s in t.stride)
    )
    return np.array(view, copy=True)
