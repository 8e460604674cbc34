# tract: LSTM with clip=1 gives the outputs of the same model without clip (Y_c off by 0.0022)
# Run in this folder: python repro.py   (needs only tract and numpy)
import numpy as np
import tract

OUTPUTS = ["Y", "Y_h", "Y_c"]  # the model's outputs, in order
FACTS = {"X": "1,1,1,f32"}  # the model's inputs, in order, with their shapes
inputs, expected = dict(np.load("inputs.npz")), np.load("expected.npz")
try:
    model = tract.onnx().load("model.onnx")
    for index, fact in enumerate(FACTS.values()):  # concrete shapes: a symbolic batch aborts tract
        model.set_input_fact(index, fact)
    results = model.into_model().into_runnable().run([inputs[name] for name in FACTS])
    outputs = dict(zip(OUTPUTS, (result.to_numpy() for result in results)))
except Exception as exc:  # the runtime refuses the model
    raise SystemExit(f"tract raised {type(exc).__name__}: {exc}") from None
for name in expected.files:
    actual, want = np.asarray(outputs[name], np.float64), expected[name]
    if actual.shape != want.shape:
        print(f"{name}: shape {list(actual.shape)}, expected {list(want.shape)}")
    else:
        print(f"{name}: greatest |actual - expected| = {np.abs(actual - want).max():.3g}")
