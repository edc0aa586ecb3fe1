#!/usr/bin/env python3
"""Training throughput of the Jena models, recur against PyTorch on the CPU or
on one GPU, same machine, same run, interleaved.

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

--device cuda: the end-to-end GPU comparison of the benchmark suite: one epoch
of the Jena forecaster's training (by default GRU 32, B 128, T 240, 14
features, 500 timed steps after 20 warm-up steps, 3 interleaved repeats) in
recur (bench_train --device cuda:0, a recur built with CUDA) and in PyTorch on
the same GPU (nn.GRU, which runs cuDNN), float32 on both sides with TF32 off
(torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32 set
False; recur's cuBLAS and kernels do no TF32). Each PyTorch step ends with
torch.cuda.synchronize(), as recur's train_on_batch ends by reading the loss;
steps are timed on the host clock. The output goes to --out (default
bench/results/<the GPU's name>/). Without a GPU (PyTorch sees no CUDA device,
or recur cannot open one) it says so and exits 0, measuring nothing.
    python3 bench/train_vs_pytorch.py --device cuda --bench build-gpu/bin/bench_train
Needs PyTorch (Debian: apt-get install python3-torch). Written for PyTorch
1.13 (here) and 2.x (GPU machines)."""
import argparse
import csv
import datetime
import io
import os
import platform
import re
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
    dev = torch.device("cuda:0" if a.device == "cuda" else "cpu")
    net = torch_model(name, a.time, a.features).to(dev)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = nn.L1Loss()
    g = torch.Generator().manual_seed(42)
    x = (torch.rand(a.batch, a.time, a.features, generator=g) * 2 - 1).to(dev)
    y = (torch.rand(a.batch, generator=g) * 2 - 1).to(dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x).squeeze(-1), y)
        loss.backward()
        opt.step()
        v = loss.item()
        sync()
        return v

    for _ in range(a.warmup):
        step()
    sync()
    t = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return a.batch * a.steps / sum(t), 1000 * statistics.median(t), 1000 * min(t)


def recur_cmd(name, a):
    cmd = [a.bench, "--model", name, "--batch", str(a.batch), "--time", str(a.time),
           "--features", str(a.features), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--threads", str(a.threads)]
    return cmd + ["--device", "cuda:0"] if a.device == "cuda" else cmd


def recur_trial(name, a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.check_output(recur_cmd(name, a), text=True, env=env)
    row = next(csv.DictReader(io.StringIO(out)))
    median = float(row["median_step_ms"])
    return float(row["samples_per_s"]), median, float(row.get("min_step_ms", median))


def load():
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def slug(name):
    """A folder name for a device: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def no_gpu(why):
    print(f"# train_vs_pytorch --device cuda: no GPU found: {why}; nothing measured", flush=True)
    sys.exit(0)


def cuda_setup(a):
    """Checks that both sides can use the GPU (exits 0 saying why not) and
    returns the header's device line."""
    if not torch.cuda.is_available():
        no_gpu(f"PyTorch {torch.__version__} sees no CUDA device "
               f"(built with CUDA {torch.version.cuda or 'none'})")
    probe = [a.bench, "--model", "gru", "--batch", "2", "--time", "3", "--features", "2",
             "--steps", "1", "--warmup", "0", "--device", "cuda:0"]
    p = subprocess.run(probe, capture_output=True, text=True)
    if p.returncode != 0:
        no_gpu(f"recur cannot train on cuda:0 ({' '.join(probe)}: {p.stderr.strip() or p.stdout.strip()})")
    torch.backends.cudnn.enabled = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name(0)
    drv = "unknown"
    try:
        with open("/proc/driver/nvidia/version") as f:
            m = re.search(r"\b(\d+\.\d+(?:\.\d+)?)\b", f.readline())
            drv = m.group(1) if m else drv
    except OSError:
        pass
    return name, (f"GPU: {name}, driver {drv}; PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
                  f"cuDNN {torch.backends.cudnn.version()} (enabled, TF32 off)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu (default) or cuda: PyTorch with cuDNN and recur on GPU 0")
    ap.add_argument("--bench", default="build-cpu/bin/bench_train")
    # Defaults: the CPU comparison's (unchanged), or the GPU epoch's with --device cuda.
    ap.add_argument("--models", help="default: gru,lstm,dense,conv (cpu), gru (cuda)")
    ap.add_argument("--repeats", type=int, help="default: 5 (cpu), 3 (cuda)")
    ap.add_argument("--steps", type=int, help="default: 10 (cpu), 500: one epoch (cuda)")
    ap.add_argument("--warmup", type=int, help="default: 2 (cpu), 20 (cuda)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--time", type=int, default=240)
    ap.add_argument("--features", type=int, help="default: 6 (cpu), 14: the Jena data's (cuda)")
    ap.add_argument("--out", help="default: bench/results/cpu-2core (cpu), bench/results/<GPU name> (cuda)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    gpu = a.device == "cuda"
    for k, cpu_v, cuda_v in (("models", "gru,lstm,dense,conv", "gru"), ("repeats", 5, 3),
                             ("steps", 10, 500), ("warmup", 2, 20), ("features", 6, 14)):
        if getattr(a, k) is None:
            setattr(a, k, cuda_v if gpu else cpu_v)
    device_line = None
    if gpu:
        gpu_name, device_line = cuda_setup(a)
        if a.out is None:
            a.out = os.path.join("bench", "results", slug(gpu_name))
    elif a.out is None:
        a.out = "bench/results/cpu-2core"
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
        row = dict(device="cuda") if gpu else {}
        rows.append(dict(row, model=name, batch=a.batch, time=a.time, features=a.features,
                         threads=a.threads, recur_samples_per_s=rec, pytorch_samples_per_s=tor,
                         ratio=rec / tor,
                         recur_step_ms=statistics.median(v[1] for v in rs),
                         pytorch_step_ms=statistics.median(v[1] for v in ts),
                         recur_best_ms=min(v[2] for v in rs),
                         pytorch_best_ms=min(v[2] for v in ts),
                         recur_min_max=f"{min(v[0] for v in rs):.1f}-{max(v[0] for v in rs):.1f}",
                         pytorch_min_max=f"{min(v[0] for v in ts):.1f}-{max(v[0] for v in ts):.1f}",
                         load_before=load_before, load_after=load()))
        if gpu:  # the epoch: --steps steps of --batch samples at the median rate
            rows[-1]["epoch_s_recur"] = a.steps * a.batch / rec
            rows[-1]["epoch_s_pytorch"] = a.steps * a.batch / tor
    cmd = f"{sys.executable} bench/train_vs_pytorch.py " + " ".join(shlex.quote(s) for s in sys.argv[1:])
    head = (f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), recur "
            f"{a.threads} threads; {stamp}\n"
            + (f"{device_line}; each PyTorch step ends with torch.cuda.synchronize()\n" if gpu else "") +
            f"command: {cmd.strip()}\n"
            f"recur: {' '.join(recur_cmd('MODEL', a))}\n"
            f"median of {a.repeats} interleaved repeats of {a.warmup} warm-up + {a.steps} timed "
            f"steps; best: the fastest single step of all repeats; load average (1/5/15 min) "
            f"before and after each model; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}\n")
    epoch = " epoch s recur | epoch s PyTorch |" if gpu else ""
    lines = [head,
             "| model | B | T | F | recur samples/s | PyTorch samples/s | recur/PyTorch | "
             "recur ms/step | PyTorch ms/step | recur best ms | PyTorch best ms | "
             "recur range | PyTorch range | load before | load after |" + epoch,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if gpu else "")]
    for w in rows:
        lines.append(f"| {w['model']} | {w['batch']} | {w['time']} | {w['features']} | "
                     f"{w['recur_samples_per_s']:.1f} | {w['pytorch_samples_per_s']:.1f} | "
                     f"{w['ratio']:.2f} | {w['recur_step_ms']:.2f} | {w['pytorch_step_ms']:.2f} | "
                     f"{w['recur_best_ms']:.2f} | {w['pytorch_best_ms']:.2f} | {w['recur_min_max']} | {w['pytorch_min_max']} | {w['load_before']} | "
                     f"{w['load_after']} |"
                     + (f" {w['epoch_s_recur']:.2f} | {w['epoch_s_pytorch']:.2f} |" if gpu else ""))
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
