#!/usr/bin/env python3
"""recur's CPU backend against PyTorch on the CPU, same machine, same run.

Runs build/bin/bench_rnn on the CPU and the same layers in PyTorch (nn.LSTM /
nn.GRU, batch_first, float32, all cores), forward (inference, no_grad) and
forward + backward, median of repeats after a warm-up, random inputs. Prints a
markdown table with the ratio recur/PyTorch in samples per second (above 1:
recur is faster) and writes the CSV and the table to the output folder.

    /usr/bin/python3 bench/rnn_cpu_vs_pytorch.py [--bench build/bin/bench_rnn] [--out DIR]
Needs PyTorch (Debian: apt-get install python3-torch)."""
import argparse
import csv
import datetime
import io
import os
import platform
import statistics
import subprocess
import time

import torch

CONFIGS = [  # cell, H, B, T, I: the Jena shape first, then a subset of the suite
    ("gru", 32, 128, 240, 14),
    ("lstm", 32, 128, 240, 14),
    ("gru", 128, 32, 240, 128),
    ("lstm", 128, 32, 240, 128),
    ("gru", 256, 1, 240, 256),
    ("lstm", 256, 64, 240, 256),
]


def torch_time(cell, H, B, T, I, repeats):
    torch.manual_seed(0)
    net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H, batch_first=True)
    x = torch.rand(B, T, I) * 2 - 1
    dy = torch.ones(B, T, H)

    def fwd():
        with torch.no_grad():
            net(x)

    def train():
        net.zero_grad()
        y, _ = net(x)
        y.backward(dy)

    out = {}
    for mode, f in (("forward", fwd), ("train", train)):
        f()
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            t.append((time.perf_counter() - t0) * 1000)
        out[mode] = statistics.median(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bin/bench_rnn")
    ap.add_argument("--out", default="bench/results/cpu-2core")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    cmd = [a.bench, "--device", "cpu", "--repeats", str(a.repeats)]
    for c in CONFIGS:
        cmd += ["--config", ",".join(map(str, c))]
    rows = list(csv.DictReader(io.StringIO(subprocess.check_output(cmd, text=True))))
    peer = {c: torch_time(*c, a.repeats) for c in CONFIGS}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads); {stamp}\n"
            f"command: /usr/bin/python3 bench/rnn_cpu_vs_pytorch.py (bench: {' '.join(cmd[:5])} ...)\n")
    lines = [head, "| cell | H | B | T | I | mode | recur ms | PyTorch ms | recur/PyTorch (samples/s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    csv_lines = ["cell,H,B,T,I,mode,recur_ms,pytorch_ms,ratio"]
    for r in rows:
        cfg = (r["cell"], int(r["H"]), int(r["B"]), int(r["T"]), int(r["I"]))
        p = peer[cfg][r["mode"]]
        ratio = p / float(r["ms"])
        lines.append(f"| {cfg[0]} | {cfg[1]} | {cfg[2]} | {cfg[3]} | {cfg[4]} | {r['mode']} | "
                     f"{float(r['ms']):.2f} | {p:.2f} | {ratio:.2f} |")
        csv_lines.append(f"{','.join(map(str, cfg))},{r['mode']},{r['ms']},{p:.3f},{ratio:.3f}")
    table = "\n".join(lines)
    print(table)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "rnn_cpu_vs_pytorch.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "rnn_cpu_vs_pytorch.csv"), "w") as f:
        f.write("# " + head.replace("\n", "\n# ").rstrip("# ") + "\n".join(csv_lines) + "\n")


if __name__ == "__main__":
    main()
