"""A small helper for building ONNX graphs from numpy weights."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.initializers = []
        self.inputs = []
        self.outputs = []
        self._count = 0
        # When set: matrices and tables (2+ dimensions) are stored as
        # float16 and cast to float32 in the graph, which halves the file;
        # runtimes fold the cast into the constant when they load it.
        self.half_weights = False

    def fresh(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name, array):
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        if self.half_weights and array.dtype == np.float32 and array.ndim >= 2:
            self.initializers.append(numpy_helper.from_array(array.astype(np.float16), name + "_f16"))
            self.nodes.append(helper.make_node("Cast", [name + "_f16"], [name], name=name, to=TensorProto.FLOAT))
            return name
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def output(self, value, name, shape):
        self.nodes.append(helper.make_node("Identity", [value], [name], name=name))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def model(self, doc=""):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="vigil-kit",
            doc_string=doc,
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # Common layers ---------------------------------------------------------

    def conv(self, x, weight, bias, stride=1, pads=(0, 0, 0, 0), group=1, hint="conv"):
        w = self.const(self.fresh(hint + "_w"), weight)
        inputs = [x, w]
        if bias is not None:
            inputs.append(self.const(self.fresh(hint + "_b"), bias))
        k = weight.shape[2:]
        return self.op(
            "Conv",
            inputs,
            hint,
            kernel_shape=list(k),
            strides=[stride, stride],
            pads=list(pads),
            group=group,
        )

    def linear(self, x, weight, bias=None, hint="linear"):
        """x @ weight.T + bias, weight as [out, in] (torch layout)."""
        w = self.const(self.fresh(hint + "_w"), np.ascontiguousarray(weight.T))
        y = self.op("MatMul", [x, w], hint)
        if bias is not None:
            y = self.op("Add", [y, self.const(self.fresh(hint + "_b"), bias)], hint + "_bias")
        return y

    def scalar(self, value):
        return self.const(self.fresh("scalar"), np.array(value, dtype=np.float32))

    def gelu(self, x):
        """Exact GELU: 0.5 x (1 + erf(x / sqrt 2))."""
        scaled = self.op("Mul", [x, self.scalar(1.0 / np.sqrt(2.0))])
        erf = self.op("Erf", [scaled])
        one_plus = self.op("Add", [erf, self.scalar(1.0)])
        half_x = self.op("Mul", [x, self.scalar(0.5)])
        return self.op("Mul", [half_x, one_plus], "gelu")

    def layer_norm(self, x, gamma, beta, eps=1e-5):
        g = self.const(self.fresh("ln_g"), gamma)
        b = self.const(self.fresh("ln_b"), beta)
        return self.op("LayerNormalization", [x, g, b], "ln", axis=-1, epsilon=eps)


def same_pads(size, kernel, stride):
    """TensorFlow 'SAME' padding for one spatial dim: (begin, end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out
