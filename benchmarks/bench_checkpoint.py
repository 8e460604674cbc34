"""Reading a state_dict without torch vs ``torch.load(weights_only=True)``, each in a fresh interpreter.

Usage: python benchmarks/bench_checkpoint.py [--repeats 5]

A 2-layer bidirectional ``nn.LSTM(16, 32)`` is saved with ``torch.save``; then ``python -c ...`` reads it
--repeats times with ``conformance.checkpoint.read_state_dict`` and with ``import torch;
torch.load(weights_only=True)``. Printed: the median wall time of the whole child process (interpreter
start, imports, read), the time of the read alone inside the child, and the child's peak RSS (VmHWM).
Also: ``python -c pass`` as the floor. Target (issue 11): ``check --weights model.pt`` <= 0.8 s in all,
so the reader should cost a small fraction of that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PEAK = "[x for x in open('/proc/self/status').read().split(chr(10)) if x.startswith('VmHWM:')][0].split()[1]"
READERS = {
    "python -c pass": "import time; t = time.perf_counter()",
    "conformance.checkpoint": (
        "import time; t = time.perf_counter()\n"
        "from conformance.checkpoint import read_state_dict\n"
        "arrays = read_state_dict(PATH, max_bytes=2 << 30)\n"
        "assert len(arrays) == 16 and 'torch' not in __import__('sys').modules\n"
    ),
    "torch.load(weights_only)": (
        "import time; t = time.perf_counter()\n"
        "import torch\n"
        "state = torch.load(PATH, map_location='cpu', weights_only=True)\n"
        "assert len(state) == 16\n"
    ),
}


def _child(code: str, path: Path) -> tuple[float, float, int]:
    """Wall seconds of the whole child, seconds inside it after start-up, peak RSS in MiB."""
    script = code.replace("PATH", repr(str(path))) + f"\nprint(time.perf_counter() - t, {PEAK})\n"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - start
    inside, peak_kib = done.stdout.split()
    return wall, float(inside), int(peak_kib) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lstm.pt"
        torch.save(torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True).state_dict(), path)
        print(f"checkpoint: 2-layer bidirectional nn.LSTM(16, 32), {path.stat().st_size / 1024:.0f} KiB, 16 tensors")
        print(f"{'reader':26} {'process wall s':>14} {'imports+read s':>14} {'peak RSS MiB':>13}")
        for label, code in READERS.items():
            runs = [_child(code, path) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            inside = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            print(f"{label:26} {wall:14.3f} {inside:14.3f} {peak:13d}")


if __name__ == "__main__":
    main()
