"""Train the small character LSTM language model behind the ``trained`` weights recipe.

Usage: python tools/train_lm.py [--steps 600] [--out cases/data/lm-trained.npz]

Fits embedding 16 -> LSTM(16, 32, 1 layer) -> linear -> log-softmax on the
generated corpus (conformance/corpus.py) with Adam, then saves the weights in
canonical ONNX layout via reference.weights (float32-representable values).
Prints the training loss and the reference perplexity before and after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from conformance import corpus
from reference.config import LMConfig, LSTMConfig
from reference.models import perplexity
from reference.weights import LMWeights, generate_lm, lm_from_torch_state_dict, lm_to_torch_state_dict, save

CONFIG = LMConfig(vocab_size=len(corpus.VOCAB), lstm=LSTMConfig(input_size=16, hidden_size=32, num_layers=1))


class _LM(torch.nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(config.vocab_size, config.embed_size)
        self.lstm = torch.nn.LSTM(config.embed_size, config.lstm.hidden_size, config.lstm.num_layers)
        self.proj = torch.nn.Linear(config.lstm.output_size, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embedding(tokens))
        return torch.log_softmax(self.proj(hidden), dim=-1)


def _rounded(weights: LMWeights) -> LMWeights:
    sd = {k: v.astype(np.float32).astype(np.float64) for k, v in lm_to_torch_state_dict(weights).items()}
    return lm_from_torch_state_dict(sd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("cases/data/lm-trained.npz"))
    args = parser.parse_args()
    torch.manual_seed(0)
    ids = np.array(corpus.encode(corpus.text()), dtype=np.int64)
    rng = np.random.default_rng(0)
    model = _LM(CONFIG)
    initial = generate_lm(CONFIG, seed=0)
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in lm_to_torch_state_dict(initial).items()})
    probe = ids[:65].reshape(-1, 1)
    print(f"reference perplexity before: {perplexity(CONFIG, initial, probe):.3f}")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seq, batch = 48, 16
    for step in range(args.steps):
        starts = rng.integers(0, len(ids) - seq - 1, batch)
        chunk = torch.from_numpy(np.stack([ids[s : s + seq + 1] for s in starts], axis=1))
        loss = torch.nn.functional.nll_loss(model(chunk[:-1]).reshape(-1, CONFIG.vocab_size), chunk[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    trained = _rounded(lm_from_torch_state_dict(model.state_dict()))
    print(f"reference perplexity after: {perplexity(CONFIG, trained, probe):.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(args.out, trained)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
