#!/usr/bin/env python3
"""Training throughput of the Jena models, recur against PyTorch on the CPU or
on one GPU, same machine, same run, interleaved.

For each model (gru, lstm, dense, conv, conv-gru: bench/bench_train.cpp
describes them)
and each repeat, runs recur's bench_train binary and the same model in PyTorch
(float32, the same shapes, fixed random data, RMSprop(lr=1e-3, alpha=0.9,
eps=1e-7) as Keras's RMSprop defaults, L1 loss), each for --warmup untimed and
--steps timed steps, alternating which goes first. Both sides run with
--threads threads, pinned to the same CPUs, with the same OpenMP wait policy
(passive by default) and binding (bench/harness.py sets the environment and
the affinity before torch loads libgomp; recur's bench_train inherits them
and gets --threads; PyTorch gets torch.set_num_threads). Each row reports the
median samples/s of each side over the repeats (default 11; a repeat's
samples/s is the batch over its median step, so that a few steps preempted
by other processes do not move it; --rate total: over all its timed steps),
their min, max
and spread (IQR / median), the ratio recur/PyTorch (above 1: recur is
faster), each repeat's own ratio (median, min, max, spread: "paired"), the
median and the fastest single step of each, and the load average before and
after each model; a row whose paired ratios spread more than --max-spread is
flagged unstable and left out of the summary line under the table; one where
only a side's own spread does is flagged drift (the machine's speed moved
between repeats, both sides with it) and kept. The table, headed by the date, the commit (marked when the tree has
uncommitted changes outside bench/results/), the pinning, the OpenMP settings
and the command, goes to --out as markdown and CSV.

    /usr/bin/python3 bench/train_vs_pytorch.py [--bench build-cpu/bin/bench_train]
        [--models gru,lstm,dense,conv,conv-gru] [--repeats 11] [--steps 10] [--warmup 2]
        [--threads 2] [--cpus 0,1] [--omp-wait-policy passive] [--proc-bind close]
        [--max-spread 0.10] [--batch 128] [--time 240] [--features 6] [--out DIR]
        [--quick] [--no-write]

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
or recur cannot open one) it says so and exits 0, measuring nothing. The
CPU side is not pinned on the GPU unless --cpus is given (OMP_NUM_THREADS
and OMP_WAIT_POLICY are set as on the CPU).
    python3 bench/train_vs_pytorch.py --device cuda --bench build-gpu/bin/bench_train
Needs PyTorch (Debian: apt-get install python3-torch). Written for PyTorch
1.13 (here) and 2.x (GPU machines)."""
import argparse
import csv
import io
import os
import re
import statistics
import subprocess
import sys
import time

import harness

torch = nn = None  # imported in main(), after harness.pin() has set the OpenMP environment


def torch_model(name, T, F):
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
    if name == "conv-gru":  # bench_train's conv-gru: the zoo's without dropout
        return nn.Sequential(ChannelsFirst(),
                             nn.Conv1d(F, 32, 5), nn.ReLU(), nn.MaxPool1d(3),
                             nn.Conv1d(32, 32, 5), nn.ReLU(), ChannelsFirst(),
                             LastStep(nn.GRU(32, 32, batch_first=True)), nn.Linear(32, 1))
    raise ValueError(f"unknown model {name}")


class TorchJob:
    """One model in PyTorch with its optimizer and fixed random data, built once."""

    def __init__(self, name, a):
        torch.manual_seed(0)
        dev = torch.device("cuda:0" if a.device == "cuda" else "cpu")
        self.net = torch_model(name, a.time, a.features).to(dev)
        self.opt = torch.optim.RMSprop(self.net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        self.loss_fn = nn.L1Loss()
        g = torch.Generator().manual_seed(42)
        self.x = (torch.rand(a.batch, a.time, a.features, generator=g) * 2 - 1).to(dev)
        self.y = (torch.rand(a.batch, generator=g) * 2 - 1).to(dev)
        self.sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step(self):
        """One training step, timed (ms; it reads the loss, and synchronises on the GPU)."""
        t0 = time.perf_counter()
        self.opt.zero_grad()
        loss = self.loss_fn(self.net(self.x).squeeze(-1), self.y)
        loss.backward()
        self.opt.step()
        loss.item()
        self.sync()
        return (time.perf_counter() - t0) * 1000


def torch_trial(name, a):
    """One trial: a fresh model, warm-up steps, timed steps.
    Returns (samples/s, median step ms, fastest step ms)."""
    job = TorchJob(name, a)
    for _ in range(a.warmup):
        job.step()
    t = [job.step() for _ in range(a.steps)]
    return 1000.0 * a.batch * a.steps / sum(t), statistics.median(t), min(t)


class RecurServer(harness.Server):
    """bench_train --serve (with this run's batch, time, features and threads):
    one timed training step of a model per request."""

    def __init__(self, a):
        cmd = recur_cmd("MODEL", a)
        super().__init__(a, cmd[:1] + cmd[3:])  # without --model: each request names one

    def step(self, name):
        return self.request(name)


def interleaved_rounds(name, a, srv):
    """Per round, --steps single steps of each side alternating (the leading
    side alternating between rounds). Returns per round (recur, PyTorch) as
    (samples/s over the round's steps, median step ms, fastest step ms), and
    the round's paired ratio: the median over adjacent pairs of PyTorch ms /
    recur ms (= recur/PyTorch samples/s)."""
    job = TorchJob(name, a)
    for _ in range(a.warmup):
        srv.step(name)
        job.step()
    rs, ts, ps = [], [], []
    for r in range(a.repeats):
        rt, tt = [], []
        for _ in range(a.steps):
            if r % 2 == 0:
                rt.append(srv.step(name))
                tt.append(job.step())
            else:
                tt.append(job.step())
                rt.append(srv.step(name))
        rs.append((1000.0 * a.batch * a.steps / sum(rt), statistics.median(rt), min(rt)))
        ts.append((1000.0 * a.batch * a.steps / sum(tt), statistics.median(tt), min(tt)))
        ps.append(statistics.median(t / x for t, x in zip(tt, rt)))
        print(f"# {name} round {r + 1}/{a.repeats}: recur {rs[-1][0]:.1f} samples/s, "
              f"PyTorch {ts[-1][0]:.1f} samples/s, paired {ps[-1]:.2f} (load {harness.load()})",
              file=sys.stderr, flush=True)
    return rs, ts, ps


def recur_cmd(name, a):
    cmd = [a.bench, "--model", name, "--batch", str(a.batch), "--time", str(a.time),
           "--features", str(a.features), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--threads", str(a.threads)]
    return cmd + ["--device", "cuda:0"] if a.device == "cuda" else cmd


def recur_trial(name, a):
    out = subprocess.check_output(harness.child(a, recur_cmd(name, a)), text=True)
    row = next(csv.DictReader(io.StringIO(out)))
    median = float(row["median_step_ms"])
    return float(row["samples_per_s"]), median, float(row.get("min_step_ms", median))


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
    global torch, nn
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu (default) or cuda: PyTorch with cuDNN and recur on GPU 0")
    ap.add_argument("--bench", default="build-cpu/bin/bench_train")
    # Defaults: the CPU comparison's, or the GPU epoch's with --device cuda.
    ap.add_argument("--models", help="default: gru,lstm,dense,conv,conv-gru (cpu), gru (cuda)")
    ap.add_argument("--repeats", type=int,
                    help=f"default: {harness.DEFAULT_REPEATS} (cpu), 3 (cuda), 3 with --quick")
    ap.add_argument("--steps", type=int, help="default: 10 (cpu), 500: one epoch (cuda); 2 with --quick")
    ap.add_argument("--warmup", type=int, help="default: 2 (cpu), 20 (cuda); 1 with --quick")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--time", type=int, default=240)
    ap.add_argument("--features", type=int, help="default: 6 (cpu), 14: the Jena data's (cuda)")
    ap.add_argument("--out", help="default: bench/results/cpu-2core (cpu), bench/results/<GPU name> (cuda)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--rate", choices=("median-step", "total"), default="median-step",
                    help="a repeat's samples/s: batch / its median step (default; a few steps preempted by "
                         "other processes on a shared machine do not move it) or samples over the total time "
                         "of its timed steps")
    ap.add_argument("--method", choices=("interleaved", "process"),
                    help="interleaved (default on the CPU): one bench_train --serve process and one PyTorch "
                         "model per model name, and each round alternates single training steps of the two "
                         "(steps milliseconds apart see the same machine); process (default on the GPU, and "
                         "the CPU's before 2026-12-06): per repeat a fresh bench_train process and a fresh "
                         "PyTorch model, each running its warm-up and timed steps")
    harness.add_args(ap)
    a = ap.parse_args()
    gpu = a.device == "cuda"
    if a.method is None:
        a.method = "process" if gpu else "interleaved"
    for k, cpu_v, cuda_v, quick_v in (("models", "gru,lstm,dense,conv,conv-gru", "gru", None),
                                      ("repeats", harness.DEFAULT_REPEATS, 3, 3), ("steps", 10, 500, 2),
                                      ("warmup", 2, 20, 1), ("features", 6, 14, None)):
        if getattr(a, k) is None:
            setattr(a, k, quick_v if a.quick and quick_v is not None else cuda_v if gpu else cpu_v)
    if a.quick and a.out is None:
        a.no_write = True
    # On the GPU the CPU threads matter little: pinned only when --cpus says so.
    pin_line = harness.pin(a, enabled=not gpu or bool(a.cpus))
    import torch as _torch
    from torch import nn as _nn
    torch, nn = _torch, _nn
    device_line = None
    if gpu:
        gpu_name, device_line = cuda_setup(a)
        if a.out is None:
            a.out = os.path.join("bench", "results", slug(gpu_name))
    elif a.out is None:
        a.out = "bench/results/cpu-2core"
    torch.set_num_threads(a.threads)
    head = harness.header(a, "bench/train_vs_pytorch.py", pin_line, torch, extra=[
        *([f"{device_line}; each PyTorch step ends with torch.cuda.synchronize()"] if gpu else []),
        f"recur: {' '.join(recur_cmd('MODEL', a))}; {harness.binary_line(a.bench, a.binary_commit)}",
        (f"method (interleaved): one bench_train --serve process and one PyTorch model per model name, "
         f"{a.warmup} warm-up steps each; then {a.repeats} rounds of {a.steps} single steps of each side "
         f"alternating (recur, PyTorch, recur, ...; the leading side alternating between rounds); a round's "
         f"paired ratio: the median of its adjacent pairs' PyTorch ms / recur ms"
         if a.method == "interleaved" else
         f"method (process): {a.repeats} repeats, recur and PyTorch alternating which goes first; each a "
         f"fresh model (recur: a fresh process), {a.warmup} warm-up + {a.steps} timed steps; paired: a "
         f"repeat's recur/PyTorch samples/s (the two sides ran seconds apart)")
        + "; a round's (repeat's) samples/s: "
        + ("batch / its median step" if a.rate == "median-step" else "over the total time of its timed steps")
        + f"; a row: the median of the rounds' samples/s, their min, max and spread; ms/step: the "
        f"median of the rounds' median steps; best: the fastest single step of all; load average "
        f"(1/5/15 min) before and after each model; ratio: recur/PyTorch samples/s (above 1: recur faster); "
        f"paired: the median over rounds of the rounds' paired ratios, with their min, max and spread"])
    rows = []
    srv = RecurServer(a) if a.method == "interleaved" else None
    for name in a.models.split(","):
        load_before = harness.load()
        rs, ts, ps = [], [], None
        if srv:
            rs, ts, ps = interleaved_rounds(name, a, srv)
        for r in range(a.repeats if not srv else 0):
            # Alternate the order so that neither side always runs first.
            order = (recur_trial, torch_trial) if r % 2 == 0 else (torch_trial, recur_trial)
            res = {f: f(name, a) for f in order}
            rs.append(res[recur_trial])
            ts.append(res[torch_trial])
            print(f"# {name} repeat {r + 1}/{a.repeats}: recur {rs[-1][0]:.1f} samples/s, "
                  f"PyTorch {ts[-1][0]:.1f} samples/s (load {harness.load()})", file=sys.stderr, flush=True)
        # A repeat's rate: batch / its median step (default), which a few steps
        # preempted by other processes do not move, or its total rate.
        k = 0 if a.rate == "total" else 1
        rate = (lambda v: v[0]) if k == 0 else (lambda v: 1000.0 * a.batch / v[1])
        rst, tst = harness.stats([rate(v) for v in rs]), harness.stats([rate(v) for v in ts])
        # Each repeat's own ratio: both sides ran within seconds of each other
        # (process), or the round's adjacent single steps (interleaved).
        pst = harness.stats(ps if ps is not None else [rate(r) / rate(t) for r, t in zip(rs, ts)])
        row = dict(device="cuda") if gpu else {}
        rows.append(dict(row, model=name, batch=a.batch, time=a.time, features=a.features,
                         threads=a.threads, recur_samples_per_s=rst["median"],
                         pytorch_samples_per_s=tst["median"], ratio=rst["median"] / tst["median"],
                         paired_ratio=pst["median"], paired_min=pst["min"], paired_max=pst["max"],
                         paired_spread=pst["spread"],
                         recur_step_ms=statistics.median(v[1] for v in rs),
                         pytorch_step_ms=statistics.median(v[1] for v in ts),
                         recur_best_ms=min(v[2] for v in rs),
                         pytorch_best_ms=min(v[2] for v in ts),
                         recur_min=rst["min"], recur_max=rst["max"], recur_spread=rst["spread"],
                         pytorch_min=tst["min"], pytorch_max=tst["max"], pytorch_spread=tst["spread"],
                         repeats=a.repeats, flag=harness.flag(rst, tst, a.max_spread, pst),
                         load_before=load_before, load_after=harness.load(), _r=rst, _t=tst, _p=pst))
        if gpu:  # the epoch: --steps steps of --batch samples at the median rate
            rows[-1]["epoch_s_recur"] = a.steps * a.batch / rst["median"]
            rows[-1]["epoch_s_pytorch"] = a.steps * a.batch / tst["median"]
    if srv:
        srv.close()
    summ = harness.summary(rows, label="recur/PyTorch (samples/s)", name=lambda r: r["model"])
    epoch = " epoch s recur | epoch s PyTorch |" if gpu else ""
    lines = [*(f"- {h}" for h in head), "",
             "| model | B | T | F | recur samples/s | recur min-max | recur spread | PyTorch samples/s | "
             "PyTorch min-max | PyTorch spread | recur/PyTorch | paired | paired min-max | paired spread | flag | "
             "recur ms/step | PyTorch ms/step | recur best ms | PyTorch best ms | load before | load after |" + epoch,
             "|---" * 21 + "|"
             + ("---|---|" if gpu else "")]
    for w in rows:
        lines.append(f"| {w['model']} | {w['batch']} | {w['time']} | {w['features']} | "
                     f"{w['recur_samples_per_s']:.1f} | {w['recur_min']:.1f}-{w['recur_max']:.1f} | "
                     f"{harness.fmt_spread(w['_r'])} | {w['pytorch_samples_per_s']:.1f} | "
                     f"{w['pytorch_min']:.1f}-{w['pytorch_max']:.1f} | {harness.fmt_spread(w['_t'])} | "
                     f"{w['ratio']:.2f} | {w['paired_ratio']:.2f} | {w['paired_min']:.2f}-{w['paired_max']:.2f} | "
                     f"{harness.fmt_spread(w['_p'])} | {w['flag']} | {w['recur_step_ms']:.2f} | {w['pytorch_step_ms']:.2f} | "
                     f"{w['recur_best_ms']:.2f} | {w['pytorch_best_ms']:.2f} | {w['load_before']} | "
                     f"{w['load_after']} |"
                     + (f" {w['epoch_s_recur']:.2f} | {w['epoch_s_pytorch']:.2f} |" if gpu else ""))
    lines += ["", summ]
    table = "\n".join(lines)
    print(table)
    if a.no_write:
        return
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "train_vs_pytorch.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "train_vs_pytorch.csv"), "w") as f:
        f.write("".join(f"# {h}\n" for h in head + [summ]))
        fields = [k for k in rows[0] if not k.startswith("_")]
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        for w in rows:
            wr.writerow({k: ("" if v is None else f"{v:.3f}" if isinstance(v, float) else v)
                         for k, v in w.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
