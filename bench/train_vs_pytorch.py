#!/usr/bin/env python3
"""Training throughput of the Jena models, recur against PyTorch on the CPU,
same machine, same run, interleaved.

For each model (gru, lstm, dense, conv: bench/bench_train.cpp describes them)
and each repeat, runs recur's bench_train binary and the same model in PyTorch
(float32, the same shapes, fixed random data, RMSprop(lr=1e-3, alpha=0.9,
eps=1e-7) as Keras's RMSprop defaults, L1 loss), each for --warmup untimed and
--steps timed steps, alternating which goes first. Both use --threads threads
(torch.set_num_threads; recur's OpenMP/OpenBLAS via --threads and
OMP_NUM_THREADS). Reports the median samples/s of each over the repeats and
the ratio recur/PyTorch (above 1: recur is faster), the fastest single step
of each, and the load average before and after each model, and writes a
markdown table and a CSV to --out. Both sides use libgomp: on a loaded
machine its spin-waiting makes every OpenMP region expensive, so the header
records OMP_WAIT_POLICY.

    /usr/bin/python3 bench/train_vs_pytorch.py [--bench build-cpu/bin/bench_train]
        [--models gru,lstm,dense,conv] [--repeats 5] [--steps 10] [--warmup 2]
        [--threads 2] [--batch 128] [--time 240] [--features 6] [--out DIR]
Needs PyTorch (Debian: apt-get install python3-torch)."""
import argparse
import csv
import datetime
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import torch
from torch import nn


class LastStep(nn.Module):
    """nn.GRU / nn.LSTM returning the last step's output (Keras's return_sequences=False)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        y, _ = self.rnn(x)
        return y[:, -1]


class ChannelsFirst(nn.Module):
    """[B, T, C] -> [B, C, T] for nn.Conv1d."""

    def forward(self, x):
        return x.transpose(1, 2)


class GlobalMax(nn.Module):
    """Keras's GlobalMaxPooling1D on [B, C, T]."""

    def forward(self, x):
        return x.amax(dim=2)


def torch_model(name, T, F):
    if name == "gru":  # Keras's GRU(reset_after=True) is nn.GRU's cell
        return nn.Sequential(LastStep(nn.GRU(F, 32, batch_first=True)), nn.Linear(32, 1))
    if name == "lstm":
        return nn.Sequential(LastStep(nn.LSTM(F, 32, batch_first=True)), nn.Linear(32, 1))
    if name == "dense":
        return nn.Sequential(nn.Flatten(), nn.Linear(T * F, 32), nn.ReLU(), nn.Linear(32, 1))
    if name == "conv":
        return nn.Sequential(ChannelsFirst(),
                             nn.Conv1d(F, 32, 5), nn.ReLU(), nn.MaxPool1d(3),
                             nn.Conv1d(32, 32, 5), nn.ReLU(), nn.MaxPool1d(3),
                             nn.Conv1d(32, 32, 5), nn.ReLU(), GlobalMax(), nn.Linear(32, 1))
    raise ValueError(f"unknown model {name}")


def torch_trial(name, a):
    """One trial: a fresh model, warm-up steps, timed steps.
    Returns (samples/s, median step ms, fastest step ms)."""
    torch.manual_seed(0)
    net = torch_model(name, a.time, a.features)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = nn.L1Loss()
    g = torch.Generator().manual_seed(42)
    x = torch.rand(a.batch, a.time, a.features, generator=g) * 2 - 1
    y = torch.rand(a.batch, generator=g) * 2 - 1

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x).squeeze(-1), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return a.batch * a.steps / sum(t), 1000 * statistics.median(t), 1000 * min(t)


def recur_cmd(name, a):
    return [a.bench, "--model", name, "--batch", str(a.batch), "--time", str(a.time),
            "--features", str(a.features), "--steps", str(a.steps), "--warmup", str(a.warmup),
            "--threads", str(a.threads)]


def recur_trial(name, a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.check_output(recur_cmd(name, a), text=True, env=env)
    row = next(csv.DictReader(io.StringIO(out)))
    median = float(row["median_step_ms"])
    return float(row["samples_per_s"]), median, float(row.get("min_step_ms", median))


def load():
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build-cpu/bin/bench_train")
    ap.add_argument("--models", default="gru,lstm,dense,conv")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--time", type=int, default=240)
    ap.add_argument("--features", type=int, default=6)
    ap.add_argument("--out", default="bench/results/cpu-2core")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for name in a.models.split(","):
        load_before = load()
        rs, ts = [], []
        for r in range(a.repeats):
            # Alternate the order so that neither side always runs first.
            order = (recur_trial, torch_trial) if r % 2 == 0 else (torch_trial, recur_trial)
            res = {f: f(name, a) for f in order}
            rs.append(res[recur_trial])
            ts.append(res[torch_trial])
            print(f"# {name} repeat {r}: recur {rs[-1][0]:.1f} samples/s, "
                  f"PyTorch {ts[-1][0]:.1f} samples/s (load {load()})", file=sys.stderr, flush=True)
        rec = statistics.median(v[0] for v in rs)
        tor = statistics.median(v[0] for v in ts)
        rows.append(dict(model=name, batch=a.batch, time=a.time, features=a.features,
                         threads=a.threads, recur_samples_per_s=rec, pytorch_samples_per_s=tor,
                         ratio=rec / tor,
                         recur_step_ms=statistics.median(v[1] for v in rs),
                         pytorch_step_ms=statistics.median(v[1] for v in ts),
                         recur_best_ms=min(v[2] for v in rs),
                         pytorch_best_ms=min(v[2] for v in ts),
                         recur_min_max=f"{min(v[0] for v in rs):.1f}-{max(v[0] for v in rs):.1f}",
                         pytorch_min_max=f"{min(v[0] for v in ts):.1f}-{max(v[0] for v in ts):.1f}",
                         load_before=load_before, load_after=load()))
    cmd = "/usr/bin/python3 bench/train_vs_pytorch.py " + " ".join(shlex.quote(s) for s in sys.argv[1:])
    head = (f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), recur "
            f"{a.threads} threads; {stamp}\n"
            f"command: {cmd.strip()}\n"
            f"recur: {' '.join(recur_cmd('MODEL', a))}\n"
            f"median of {a.repeats} interleaved repeats of {a.warmup} warm-up + {a.steps} timed "
            f"steps; best: the fastest single step of all repeats; load average (1/5/15 min) "
            f"before and after each model; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}\n")
    lines = [head,
             "| model | B | T | F | recur samples/s | PyTorch samples/s | recur/PyTorch | "
             "recur ms/step | PyTorch ms/step | recur best ms | PyTorch best ms | "
             "recur range | PyTorch range | load before | load after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in rows:
        lines.append(f"| {w['model']} | {w['batch']} | {w['time']} | {w['features']} | "
                     f"{w['recur_samples_per_s']:.1f} | {w['pytorch_samples_per_s']:.1f} | "
                     f"{w['ratio']:.2f} | {w['recur_step_ms']:.2f} | {w['pytorch_step_ms']:.2f} | "
                     f"{w['recur_best_ms']:.2f} | {w['pytorch_best_ms']:.2f} | {w['recur_min_max']} | {w['pytorch_min_max']} | {w['load_before']} | "
                     f"{w['load_after']} |")
    table = "\n".join(lines)
    print(table)
    if a.no_write:
        return
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "train_vs_pytorch.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "train_vs_pytorch.csv"), "w") as f:
        f.write("# " + head.rstrip("\n").replace("\n", "\n# ") + "\n")
        wr = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        wr.writeheader()
        for w in rows:
            wr.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in w.items()})


if __name__ == "__main__":
    main()
