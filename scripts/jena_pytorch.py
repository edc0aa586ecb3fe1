#!/usr/bin/python3
"""A zoo model of `recur forecast` trained in PyTorch under the same protocol,
as a peer check of recur's figures (docs/forecast-results.md).

Data, splits, windows and scaling as scripts/jena_baseline.py (and recur's
data/timeseries.h): the bundled hourly file, lookback 240 rows, delay 24
rows, every column normalised by the training rows. Training: batches of 128
windows drawn at random from the training split, 500 steps per epoch, RMSprop
(learning rate 1e-3, rho 0.9, epsilon 1e-7, as Keras), MAE loss, Keras's
initialisers (glorot_uniform kernels, orthogonal recurrent kernels, zero
biases). Validation and test MAE over every window; test at the epoch of the
best validation MAE.

Models: dense (Flatten, Dense 32 relu, Dense 1), conv (Conv1D 32 k5 relu,
MaxPool 3, Conv1D 32 k5 relu, MaxPool 3, Conv1D 32 k5 relu, global max,
Dense 1), gru (GRU 32, Dense 1), lstm (LSTM 32, Dense 1).

Usage: /usr/bin/python3 scripts/jena_pytorch.py --model conv [--epochs 20] [--seed 1] [--threads 2]
"""
import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jena_baseline import read  # noqa: E402


def splits(n):
    a = n * 200000 // 420551
    b = n * 100000 // 420551
    return (0, a), (a, a + b), (a + b, n)


def window_ends(split, lookback, delay):
    s, e = split
    return np.arange(s + lookback - 1, e - delay)


class Windows:
    def __init__(self, data, target, lookback, delay):
        self.data, self.target, self.lookback, self.delay = data, target, lookback, delay

    def batch(self, ends):
        idx = ends[:, None] + np.arange(-self.lookback + 1, 1)[None, :]
        x = torch.from_numpy(self.data[idx])
        y = torch.from_numpy(self.data[ends + self.delay, self.target])[:, None]
        return x, y


class Last(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0][:, -1]


class Conv(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv1d(f, 32, 5), nn.Conv1d(32, 32, 5), nn.Conv1d(32, 32, 5)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        h = x.transpose(1, 2)
        h = nn.functional.max_pool1d(torch.relu(self.c1(h)), 3)
        h = nn.functional.max_pool1d(torch.relu(self.c2(h)), 3)
        h = torch.relu(self.c3(h)).amax(dim=2)
        return self.out(h)


def make(name, f, lookback):
    if name == "dense":
        return nn.Sequential(nn.Flatten(), nn.Linear(lookback * f, 32), nn.ReLU(), nn.Linear(32, 1))
    if name == "conv":
        return Conv(f)
    if name == "gru":
        return nn.Sequential(Last(nn.GRU(f, 32, batch_first=True)), nn.Linear(32, 1))
    if name == "lstm":
        return nn.Sequential(Last(nn.LSTM(f, 32, batch_first=True)), nn.Linear(32, 1))
    raise SystemExit(f"unknown model {name}")


def keras_init(model):
    for name, p in model.named_parameters():
        if "bias" in name:
            nn.init.zeros_(p)
        elif "weight_hh" in name:  # orthogonal per gate block, as Keras's recurrent kernel
            g = p.shape[0] // p.shape[1]
            for k in range(g):
                nn.init.orthogonal_(p.data[k * p.shape[1]:(k + 1) * p.shape[1]])
        elif "weight_ih" in name:
            nn.init.xavier_uniform_(p)
        else:
            nn.init.xavier_uniform_(p)
    for m in model.modules():  # Keras: LSTM forget-gate bias 1
        if isinstance(m, nn.LSTM):
            h = m.hidden_size
            m.bias_ih_l0.data[h:2 * h] = 1.0


def mae(model, win, ends, bs=1024):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(ends), bs):
            x, y = win.batch(ends[i:i + bs])
            total += (model(x) - y).abs().sum().item()
    model.train()
    return total / len(ends)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="conv")
    p.add_argument("--file", default=os.path.join(here, "..", "datasets", "jena_climate_2009_2016_hourly.csv.gz"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    header, rows = read(a.file)
    data = np.asarray(rows, dtype=np.float64)
    target = header.index("T (degC)")
    tr, va, te = splits(len(data))
    mean = data[tr[0]:tr[1]].mean(axis=0)
    std = data[tr[0]:tr[1]].std(axis=0)
    data = ((data - mean) / std).astype(np.float32)
    lookback, delay = 240, 24
    win = Windows(data, target, lookback, delay)
    e_tr, e_va, e_te = (window_ends(s, lookback, delay) for s in (tr, va, te))
    model = make(a.model, data.shape[1], lookback)
    keras_init(model)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    best, best_state, best_epoch = float("inf"), None, 0
    t0 = time.time()
    for epoch in range(1, a.epochs + 1):
        t = time.time()
        for _ in range(a.steps):
            x, y = win.batch(rng.choice(e_tr, a.batch))
            loss = (model(x) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = mae(model, win, e_va)
        print(f"epoch {epoch}: train (last batch) {loss.item() * std[target]:.3f} degC, "
              f"validation {v * std[target]:.3f} degC, {time.time() - t:.1f} s", flush=True)
        if v < best:
            best, best_state, best_epoch = v, copy.deepcopy(model.state_dict()), epoch
    model.load_state_dict(best_state)
    test = mae(model, win, e_te)
    print(f"PyTorch {torch.__version__} {a.model}: best epoch {best_epoch}: validation MAE "
          f"{best * std[target]:.3f} degC, test MAE {test * std[target]:.3f} degC, "
          f"{time.time() - t0:.0f} s, seed {a.seed}")


if __name__ == "__main__":
    main()
