# ort-cpu: LSTM with sequence_lens and initial_h/initial_c computes wrong values (Y_h off by 0.97)
# Run in this folder: python repro.py   (needs only onnxruntime and numpy)
import numpy as np
import onnxruntime as ort

inputs, expected = dict(np.load("inputs.npz")), np.load("expected.npz")
try:
    ort.set_default_logger_severity(4)  # failures come back as the exception below, not as log lines
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession("model.onnx", options, providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
except Exception as exc:  # the runtime refuses the model
    raise SystemExit(f"onnxruntime raised {type(exc).__name__}: {exc}") from None
for name in expected.files:
    actual, want = np.asarray(outputs[name], np.float64), expected[name]
    if actual.shape != want.shape:
        print(f"{name}: shape {list(actual.shape)}, expected {list(want.shape)}")
    else:
        print(f"{name}: greatest |actual - expected| = {np.abs(actual - want).max():.3g}")
