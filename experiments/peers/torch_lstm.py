"""The PyTorch peer of embjax's LSTM LM (model.kind=lstm) for `python -m experiments.bench --case=lstm`.

The same shapes and step: nn.Embedding (V × d) -> nn.LSTM (num_layers × d, time-major, a zero state per window,
dropout between layers) -> dropout -> the head (tied to the embedding or an untied V × d table, no bias), mean
cross-entropy, clip_grad_norm_ 1.0, Adam (β 0.9/0.95, eps 1e-8, no decay) at a constant lr. Random token windows
made up front (embjax draws its planted batches inside the step: that cost is on embjax's side). Prints one JSON
line: tokens_per_s, step_ms, loss, threads. Needs torch (embjax does not install it); run it from its own venv:

    python -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch==2.13.0 numpy pyyaml
    /work/torchvenv/bin/python experiments/peers/torch_lstm.py --steps=20
"""

import argparse
import json
import os
import time


def add_model_args(p: argparse.ArgumentParser, dropout: float) -> None:
    """The model's shape and training settings both PyTorch peers take (this one and torch_lstm_text.py)."""
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq", type=int, default=35)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--dropout", type=float, default=dropout)
    p.add_argument("--tie", action="store_true")
    p.add_argument("--lr", type=float, default=2e-3)


def lstm_lm(V: int, a, *, embed_dropout: bool, head_bias: bool = False, init: str = "head", init_std: float = 0.02):
    """nn.Embedding (V × a.dim) -> nn.LSTM (a.layers, dropout between layers) -> dropout -> the head (the embedding
    when a.tie, else a V × d table; a bias on the logits with head_bias). forward(tok_TxB, state=None) -> (logits,
    state); no state given: zeros, as embjax's windows. init: "head" draws the head N(0, 0.02²) and leaves the
    embedding at PyTorch's N(0, 1) (the benchmark); "normal" draws both tables N(0, init_std²), "uniform" U(−0.1,
    0.1) (PyTorch's word_language_model). Modules are made in one order, so a seed gives the same numbers."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LSTMLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, a.dim)
            self.lstm = nn.LSTM(a.dim, a.dim, a.layers, dropout=a.dropout if a.layers > 1 else 0.0)
            self.drop = nn.Dropout(a.dropout)
            self.head = None if a.tie else nn.Parameter(torch.empty(V, a.dim))
            self.bias = nn.Parameter(torch.zeros(V)) if head_bias else None
            tables = [self.head] if init == "head" else [self.embed.weight, self.head]
            for w in (w for w in tables if w is not None):
                if init == "uniform":
                    nn.init.uniform_(w, -0.1, 0.1)
                else:
                    nn.init.normal_(w, 0.0, 0.02 if init == "head" else init_std)

        def forward(self, tok_TxB, state=None):
            x = self.embed(tok_TxB)
            h, state = self.lstm(self.drop(x) if embed_dropout else x, state)
            W = self.embed.weight if self.head is None else self.head
            return F.linear(self.drop(h), W, self.bias), state

    return LSTMLM()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--vocab", type=int, default=8192)
    add_model_args(p, dropout=0.0)
    p.add_argument("--threads", type=int, default=0, help="torch's intra-op threads (0: one per core it may use)")
    a = p.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads or len(os.sched_getaffinity(0)))
    torch.manual_seed(0)

    model = lstm_lm(a.vocab, a, embed_dropout=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    windows = torch.randint(0, a.vocab, (a.steps + 1, a.seq + 1, a.batch))

    def step(tok):
        logits, _ = model(tok[:-1])
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), tok[1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    model.train()
    step(windows[-1]).item()  # warm-up
    t = time.perf_counter()
    for i in range(a.steps):
        loss = step(windows[i])
    loss = loss.item()
    dt = time.perf_counter() - t
    tokens = a.steps * a.seq * a.batch
    out = {"tokens_per_s": tokens / dt, "step_ms": 1e3 * dt / a.steps, "loss": loss}
    print(json.dumps({**out, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
