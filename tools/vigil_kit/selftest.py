"""Checks of the kit's own readers that need no downloads: run by
scripts/models.sh before exporting."""

import io
import json
import os
import pickle
import struct
import sys
import tempfile
import types
from collections import OrderedDict

import numpy as np

from . import nfnet, safetensors, torch_legacy


def _write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def check_safetensors_round_trip():
    sd = {k: v for k, v in nfnet.random_state_dict(seed=3).items() if k.startswith("stages.0.0.")}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.safetensors")
        _write_safetensors(path, sd)
        back = safetensors.load(path)
    assert set(back) == set(sd), "tensor names differ"
    for k in sd:
        assert np.array_equal(back[k], np.asarray(sd[k], np.float32).reshape(back[k].shape)), k


def check_torch_legacy_round_trip():
    """Writes a legacy checkpoint the way torch.save did (magic, protocol,
    system info, the state dict with persistent storage ids, the key list,
    the raw storage data), using stand-in `torch` modules so no torch is
    needed, and reads it back."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    fake_torch.FloatStorage = FloatStorage
    fake_torch._utils = fake_utils

    class StorageId:
        key = "k0"

    class Tensor:
        def __reduce__(self):
            # Shape (3, 2) with strides (1, 3): the transpose of `a`.
            return (_rebuild_tensor_v2, (StorageId(), 0, (3, 2), (1, 3), False, OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageId):
                return ("storage", FloatStorage, obj.key, "cpu", 6)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        buf = io.BytesIO()
        pickle.dump(torch_legacy.MAGIC, buf, protocol=2)
        pickle.dump(torch_legacy.PROTOCOL, buf, protocol=2)
        pickle.dump({"little_endian": True}, buf, protocol=2)
        Pickler(buf, protocol=2).dump(OrderedDict(w=Tensor()))
        pickle.dump(["k0"], buf, protocol=2)
        buf.write(struct.pack("<q", 6) + a.tobytes())
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.pth")
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        sd = torch_legacy.load(path)
    assert np.array_equal(sd["w"], a.T), sd["w"]


def main():
    check_safetensors_round_trip()
    check_torch_legacy_round_trip()
    print("model kit self-test: safetensors and legacy torch readers OK", flush=True)
