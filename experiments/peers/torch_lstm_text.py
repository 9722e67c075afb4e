"""An independent PyTorch trainer for the LSTM recipe (experiments/configs/text_lstm.yaml) on a prepared corpus.

It reads the token files embjax prepared (`<cache>/wiki_sample-<key>/train.bin, eval.bin`) and trains the same
model as embjax's model.kind=lstm (nn.Embedding -> nn.LSTM -> dropout -> head), so a perplexity or a table can be
checked against a second implementation, and each difference between embjax's recipe and the classic PyTorch
word_language_model setting can be switched on alone:

  --carry          contiguous batches (batchify) with the hidden state carried from one window to the next,
                   as Zaremba et al. 2014 and PyTorch's example train; default: random windows from a zero state,
                   as embjax draws them
  --head-bias      a bias on the head (the example's decoder has one; embjax's head has none)
  --init=uniform   embedding and head ~ U(-0.1, 0.1) (the example's); default normal: N(0, init_std²), embjax's
  --embed-dropout  dropout on the looked-up vectors too (the example drops them; embjax's recipe does not)
  --b2             Adam's β2 (embjax's default 0.95; PyTorch's 0.999)

Eval, every epoch: `eval_loss` is embjax's (the first eval_batches × batch windows of T + 1 held-out tokens, each
from a zero state); `eval_loss_carried` is the example's (the whole held-out stream, state carried). One JSON line
per epoch. Needs torch and numpy (embjax does not install torch):

    /work/torchvenv/bin/python experiments/peers/torch_lstm_text.py --data=~/.cache/embjax/data/wiki_sample-KEY
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run by path from its own venv: its sibling
from torch_lstm import add_model_args, lstm_lm  # noqa: E402  (the benchmark peer's model, shared)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="a prepared corpus folder (train.bin, eval.bin, meta.json)")
    p.add_argument("--epochs", type=float, default=1.0)
    add_model_args(p, dropout=0.5)
    p.add_argument("--embed-dropout", action="store_true")
    p.add_argument("--b2", type=float, default=0.95)
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--head-bias", action="store_true")
    p.add_argument("--init", choices=["normal", "uniform"], default="normal")
    p.add_argument("--init-std", type=float, default=0.02, help="--init=normal's standard deviation")
    p.add_argument("--carry", action="store_true")
    p.add_argument("--eval-batches", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="", help="write the final input and output tables here (.npz)")
    a = p.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(a.seed)
    folder = os.path.expanduser(a.data)
    meta = json.load(open(os.path.join(folder, "meta.json")))
    V = int(meta["vocab_size"]) if "vocab_size" in meta else int(meta["tokenizer"]["vocab_size"])
    dtype = np.uint16 if V <= 65536 else np.uint32
    train = np.fromfile(os.path.join(folder, "train.bin"), dtype).astype(np.int64)
    held = np.fromfile(os.path.join(folder, "eval.bin"), dtype).astype(np.int64)
    T, B = a.seq, a.batch
    steps_per_epoch = math.ceil(train.size / (B * T))  # embjax's --epochs formula
    steps = math.ceil(a.epochs * steps_per_epoch)

    model = lstm_lm(V, a, embed_dropout=a.embed_dropout, head_bias=a.head_bias, init=a.init, init_std=a.init_std)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, a.b2), eps=1e-8)
    rng = np.random.default_rng(a.seed)
    stream = torch.from_numpy(train[: (train.size // B) * B].reshape(B, -1).T.copy())  # (N, B), batchify

    def windows(i):
        if a.carry:
            j = (i * T) % (stream.shape[0] - 1 - T)
            return stream[j : j + T + 1]
        starts = rng.integers(0, train.size - T, B)
        return torch.from_numpy(train[starts[:, None] + np.arange(T + 1)].T.copy())

    def evaluate():
        model.eval()
        with torch.no_grad():
            L = T + 1
            n = min(held.size // L, a.eval_batches * B)
            seqs = torch.from_numpy(held[: n * L].reshape(n, L).T.copy())
            logits, _ = model(seqs[:-1])
            zero = F.cross_entropy(logits.reshape(-1, V), seqs[1:].reshape(-1)).item()
            s = torch.from_numpy(held[: (held.size // B) * B].reshape(B, -1).T.copy())
            state, tot, cnt = None, 0.0, 0
            for j in range(0, s.shape[0] - 1, T):
                x, y = s[j : j + T], s[j + 1 : j + T + 1]
                x = x[: y.shape[0]]
                out, state = model(x, state)
                tot += F.cross_entropy(out.reshape(-1, V), y.reshape(-1), reduction="sum").item()
                cnt += y.numel()
        model.train()
        return zero, tot / cnt

    state, t0, losses = None, time.perf_counter(), []
    for i in range(steps):
        tok = windows(i)
        if a.carry and (i * T) % (stream.shape[0] - 1 - T) < T:
            state = None
        logits, state = model(tok[:-1], state)
        if state is not None:
            state = tuple(s.detach() for s in state)
        if not a.carry:
            state = None
        loss = F.cross_entropy(logits.reshape(-1, V), tok[1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        losses.append(loss.item())
        if (i + 1) % steps_per_epoch == 0 or i + 1 == steps:
            zero, carried = evaluate()
            row = {
                "step": i + 1,
                "epoch": round((i + 1) / steps_per_epoch, 3),
                "train_loss": float(np.mean(losses[-steps_per_epoch:])),
                "eval_loss": zero,
                "eval_ppl": math.exp(zero),
                "eval_loss_carried": carried,
                "eval_ppl_carried": math.exp(carried),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(row), flush=True)
    if a.save:
        W = model.embed.weight if model.head is None else model.head
        np.savez(a.save, input=model.embed.weight.detach().numpy(), output=W.detach().numpy())


if __name__ == "__main__":
    main()
