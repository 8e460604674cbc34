# openvino-cpu: LSTM with input_forget=1 gives the outputs of the same model with input_forget=0 (Y_c off by 0.29)
# Run in this folder: python repro.py   (needs only openvino and numpy)
import numpy as np
import openvino as ov

OUTPUTS = ["Y", "Y_h", "Y_c"]  # the model's outputs, in order
inputs, expected = dict(np.load("inputs.npz")), np.load("expected.npz")
try:
    compiled = ov.Core().compile_model("model.onnx", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(inputs)
    outputs = dict(zip(OUTPUTS, (results[port] for port in compiled.outputs)))
except Exception as exc:  # the runtime refuses the model
    raise SystemExit(f"openvino raised {type(exc).__name__}: {exc}") from None
for name in expected.files:
    actual, want = np.asarray(outputs[name], np.float64), expected[name]
    if actual.shape != want.shape:
        print(f"{name}: shape {list(actual.shape)}, expected {list(want.shape)}")
    else:
        print(f"{name}: greatest |actual - expected| = {np.abs(actual - want).max():.3g}")
