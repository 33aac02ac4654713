"""Which ONNX Runtime kernel runs a ternary 384 x 1536 linear fastest (1 thread, medians)?

    python bench/matmul_kernels.py

Compares fp32 MatMul, MatMulInteger (uint8 activations, zero point 128, int8 codes: what
``xtc export --format onnx`` uses) and com.microsoft MatMulNBits with 2- and 4-bit weights at
accuracy levels 0 (fp32 compute) and 4 (int8 compute, activations re-quantized per block: not exact
to training). Rows: 1, 16, 128. Writes bench/results/matmul_kernels.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

K, N = 384, 1536
RESULTS = Path(__file__).resolve().parent / "results"


def session(nodes, inits, inputs):
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, out, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def nbits_session(codes, alpha, bits, block, accuracy, xin):
    per = 8 // bits
    blocks = K // block
    words = (codes.astype(np.int32) + 1).astype(np.uint8).reshape(N, blocks, block)  # zero point 1
    packed = np.zeros((N, blocks, block * bits // 8), np.uint8)
    for i in range(per):
        packed |= (words[:, :, i::per] << (bits * i)).astype(np.uint8)
    scales = np.repeat(alpha[:, None], blocks, 1).astype(np.float32).reshape(-1)
    zp = np.zeros((N, (blocks + per - 1) // per), np.uint8)
    for j in range(blocks):
        zp[:, j // per] |= np.uint8(1 << (bits * (j % per)))
    node = helper.make_node(
        "MatMulNBits",
        ["x", "b", "s", "z"],
        ["y"],
        domain="com.microsoft",
        K=K,
        N=N,
        bits=bits,
        block_size=block,
        accuracy_level=accuracy,
    )
    inits = [
        numpy_helper.from_array(packed, "b"),
        numpy_helper.from_array(scales, "s"),
        numpy_helper.from_array(zp.reshape(-1), "z"),
    ]
    return session([node], inits, [xin])


def main() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 2, (N, K)).astype(np.int8)
    alpha = rng.uniform(0.01, 0.1, N).astype(np.float32)
    w = codes.astype(np.float32) * alpha[:, None]
    xin = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])
    uin = helper.make_tensor_value_info("u", TensorProto.UINT8, [None, K])
    sessions = {
        "fp32 MatMul": session(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w.T.copy(), "w")], [xin]
        ),
        "MatMulInteger u8s8 (ours)": session(
            [
                helper.make_node("MatMulInteger", ["u", "c", "zp"], ["a"]),
                helper.make_node("Cast", ["a"], ["y"], to=1),
            ],
            [
                numpy_helper.from_array(codes.T.copy(), "c"),
                numpy_helper.from_array(np.array(128, np.uint8), "zp"),
            ],
            [uin],
        ),
    }
    for bits in (2, 4):
        for accuracy in (0, 4):
            sessions[f"MatMulNBits {bits}-bit acc{accuracy}"] = nbits_session(
                codes, alpha, bits, 32, accuracy, xin
            )
    results = {}
    for rows in (1, 16, 128):
        q = rng.integers(-127, 128, (rows, K))
        s = np.float32(0.02)
        x = (q * s).astype(np.float32)
        ref = x @ w.T
        for name, sess in sessions.items():
            feeds = {"u": (q + 128).astype(np.uint8)} if "Integer" in name else {"x": x}
            y = sess.run(None, feeds)[0]
            if "Integer" in name:
                y = y * s * alpha
            times = []
            for i in range(60):
                start = time.perf_counter()
                sess.run(None, feeds)
                if i >= 10:
                    times.append(time.perf_counter() - start)
            results.setdefault(str(rows), {})[name] = {
                "us": float(np.median(times) * 1e6),
                "max_abs_err": float(np.abs(y - ref).max()),
            }
        print(
            rows, {k: f"{v['us']:.0f} us (err {v['max_abs_err']:.1e})" for k, v in results[str(rows)].items()}
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "matmul_kernels.json").write_text(
        json.dumps({"onnxruntime": ort.__version__, "K": K, "N": N, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
