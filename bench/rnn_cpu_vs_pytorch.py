#!/usr/bin/env python3
"""recur's CPU backend against PyTorch on the CPU, same machine, same run.

Runs recur's bench_rnn on the CPU and the same layers in PyTorch (nn.LSTM /
nn.GRU, batch_first, float32), forward (inference, no_grad) and forward +
backward, random inputs. Training computes the weight gradients and not the
input's: PyTorch's input has no requires_grad, and bench_rnn calls backward
with input_grad false (as a model does for its first layer); until 2026-12-06
recur's side computed dx as well, work PyTorch skipped. Both sides run with
the same threads, pinned to the same CPUs, with the same OpenMP wait policy
(bench/harness.py says how).

Method (--method interleaved, the default since 2026-12-06): one
`bench_rnn --serve` process keeps each configuration's layer built and times
one call per request; after a warm-up call per configuration, mode and side,
--repeats rounds (default 11) each run, per configuration and mode, --inner
(default 5) single calls of each side alternating (recur, PyTorch, recur,
...), the leading side alternating between rounds. A round's figure per side
is the median of its calls, and its paired ratio the median of its adjacent
pairs' PyTorch/recur: calls milliseconds apart see the same machine, where
blocks of calls seconds apart do not on a shared VM (measured here: 5 % IQR
for alternating single calls against 14 % for blocks 0.3 s apart). --method
process keeps the earlier way: per round a fresh bench_rnn process (one
warm-up call, then --inner timed calls per mode, their median), then PyTorch
the same way.

A row reports the median of the rounds, their min, max and spread (IQR /
median), the ratio recur/PyTorch in samples/s (the PyTorch median over
recur's: above 1 recur is faster); "paired", the median over rounds of the
rounds' paired ratios, with its min, max and spread; and a flag: unstable
when the paired ratios spread more than --max-spread, drift when only a
side's own spread does (the machine's speed moved, both sides with it; such
rows are kept); and, from bench_cpu_peak, recur's GFLOP/s, its share of the
machine's FMA peak and the share twice PyTorch's speed would need.
--baseline OTHER_BENCH runs a second recur binary (say, built at the commit
before a change; with the interleaved method it needs --serve too) in the
same rounds, the three sides in rotating order, and adds its median and the
paired speedup: on a shared machine this is the before/after comparison to
read, not two runs minutes apart. The table is headed by the date, the
commit, the pinning and OpenMP settings and the command, and ends with a
summary over the readable rows and the lowest single-round ratio of all.
Writes rnn_cpu_vs_pytorch.{md,csv} to --out.

    /usr/bin/python3 bench/rnn_cpu_vs_pytorch.py [--bench build-cpu/bin/bench_rnn] [--out DIR]
        [--repeats 11] [--inner 5] [--threads 2] [--cpus 0,1] [--omp-wait-policy passive]
        [--proc-bind close] [--max-spread 0.10] [--config cell,H,B,T,I ...] [--quick] [--no-write]
        [--baseline OTHER_BENCH] [--method interleaved|process] [--peak BENCH_CPU_PEAK] [--note TEXT]
Needs PyTorch (Debian: apt-get install python3-torch)."""
import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import time

import harness

torch = None  # imported in main(), after harness.pin() has set the OpenMP environment

CONFIGS = [  # cell, H, B, T, I: the Jena shape first, then a subset of the suite
    ("gru", 32, 128, 240, 14),
    ("lstm", 32, 128, 240, 14),
    ("gru", 128, 32, 240, 128),
    ("lstm", 128, 32, 240, 128),
    ("gru", 256, 1, 240, 256),
    ("lstm", 256, 64, 240, 256),
]
MODES = ("forward", "train")


def parse_config(s):
    cell, *dims = s.split(",")
    if cell not in ("gru", "lstm") or len(dims) != 4:
        raise argparse.ArgumentTypeError(f"--config {s}: want gru|lstm,H,B,T,I")
    return (cell, *map(int, dims))


class TorchLayer:
    """One configuration's PyTorch layer and inputs, built once and timed each round."""

    def __init__(self, cell, H, B, T, I):
        torch.manual_seed(0)
        self.net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H, batch_first=True)
        self.x = torch.rand(B, T, I) * 2 - 1
        self.dy = torch.ones(B, T, H)

    def forward(self):
        with torch.no_grad():
            self.net(self.x)

    def train(self):
        self.net.zero_grad()
        y, _ = self.net(self.x)
        y.backward(self.dy)

    def once(self, mode):
        """One timed call (ms)."""
        f = getattr(self, mode)
        t0 = time.perf_counter()
        f()
        return (time.perf_counter() - t0) * 1000

    def trial(self, inner):
        """As bench_rnn: per mode one warm-up call, then the median of inner timed calls (ms)."""
        out = {}
        for mode in MODES:
            f = getattr(self, mode)
            f()
            t = []
            for _ in range(inner):
                t0 = time.perf_counter()
                f()
                t.append((time.perf_counter() - t0) * 1000)
            out[mode] = statistics.median(t)
        return out


def recur_cmd(a, cfg, bench=None):
    return [bench or a.bench, "--device", "cpu", "--repeats", str(a.inner), "--config", ",".join(map(str, cfg))]


def recur_trial(a, cfg, bench=None):
    rows = csv.DictReader(io.StringIO(subprocess.check_output(harness.child(a, recur_cmd(a, cfg, bench)),
                                                              text=True)))
    return {r["mode"]: float(r["ms"]) for r in rows}


class RecurServer(harness.Server):
    """bench_rnn --serve: one timed call of a configuration and mode per request."""

    def __init__(self, a, bench):
        super().__init__(a, [bench, "--device", "cpu"])

    def once(self, cfg, mode):
        return self.request(f"{','.join(map(str, cfg))} {mode}")


def gflop(cell, H, B, T, I, mode):
    """The multiply-adds of a layer pass, as GFLOP: forward, the input and
    recurrent products 2 T B G (I + H) with G = gates x H; training adds the
    weight gradients (the same again) and dh's recurrent product (2 T B G H).
    The gate math is left out (it is not multiply-adds)."""
    G = (4 if cell == "lstm" else 3) * H
    fwd = 2 * T * B * G * (I + H)
    return (fwd if mode == "forward" else 2 * fwd + 2 * T * B * G * H) / 1e9


def measure_peak(a):
    """The pinned CPUs' float32 FMA peak (bench_cpu_peak beside --bench), GFLOP/s, or None."""
    exe = a.peak or os.path.join(os.path.dirname(a.bench), "bench_cpu_peak")
    if not os.path.exists(exe):
        return None
    out = subprocess.check_output(harness.child(a, [exe, "--threads", str(a.threads)]), text=True)
    return float(next(csv.DictReader(io.StringIO(out)))["gflops"])


def main():
    global torch
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build-cpu/bin/bench_rnn")
    ap.add_argument("--out", help="default: bench/results/cpu-2core")
    ap.add_argument("--repeats", type=int, help=f"rounds (default {harness.DEFAULT_REPEATS}; 3 with --quick)")
    ap.add_argument("--inner", type=int, help="timed calls per round and mode, their median (default 5; 1 with --quick)")
    ap.add_argument("--config", type=parse_config, action="append",
                    help="cell,H,B,T,I (repeatable; default: the six of the committed table)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--method", choices=("interleaved", "process"), default="interleaved",
                    help="interleaved (default): one bench_rnn --serve process per binary, and each round "
                         "alternates single calls of the sides (calls milliseconds apart see the same "
                         "machine); process: per round a fresh bench_rnn process runs --inner calls, then "
                         "PyTorch --inner calls (the method before 2026-12-06)")
    ap.add_argument("--peak", help="the bench_cpu_peak binary (default: beside --bench); its figure, taken before "
                    "and after the rounds (the higher), gives each row's share of the machine")
    ap.add_argument("--baseline", help="a second recur bench binary (say, built at the commit before a change), "
                    "run in the same rounds: adds its median and the paired speedup")
    harness.add_args(ap)
    a = ap.parse_args()
    if a.repeats is None:
        a.repeats = 3 if a.quick else harness.DEFAULT_REPEATS
    if a.inner is None:
        a.inner = 1 if a.quick else 5
    if a.quick and a.out is None:
        a.no_write = True
    a.out = a.out or "bench/results/cpu-2core"
    configs = a.config or CONFIGS
    pin_line = harness.pin(a)
    import torch as _torch
    torch = _torch
    torch.set_num_threads(a.threads)
    head = harness.header(a, "bench/rnn_cpu_vs_pytorch.py", pin_line, torch, extra=[
        f"recur: {a.bench + ' --device cpu --serve' if a.method == 'interleaved' else ' '.join(recur_cmd(a, ('CELL,H,B,T,I',)))}; "
        f"{harness.binary_line(a.bench)}",
        (f"method (interleaved): one bench_rnn --serve process, built layers kept; a warm-up call per "
         f"configuration, mode and side; then {a.repeats} rounds, in each, per configuration and mode, "
         f"{a.inner} single timed calls of each side alternating (recur, PyTorch, recur, ...; which side "
         f"leads alternates between rounds), a round's figure per side the median of its calls and its "
         f"paired ratio the median of the adjacent pairs' PyTorch/recur"
         if a.method == "interleaved" else
         f"method (process): {a.repeats} rounds, recur and PyTorch alternating which goes first; per round, "
         f"side and mode one warm-up call and the median of {a.inner} timed calls (recur: a fresh bench_rnn "
         f"process); paired: a round's PyTorch ms / recur ms")
        + f"; a row: the median of the rounds, their min, max and spread; ratio: PyTorch median ms / recur "
        f"median ms (samples/s; above 1: recur faster); paired: the median over rounds of the rounds' paired "
        f"ratios (steadier when the machine's speed drifts); train: forward + backward to the weight gradients, the "
        f"input's gradient skipped on both sides (PyTorch: x without requires_grad; recur: input_grad false)",
        *([f"baseline: {a.baseline} (run in every round beside recur and PyTorch, the three in rotating order); "
           f"speedup: the median over rounds of baseline ms / recur ms in the same round (interleaved: of the "
           f"round's adjacent calls); "
           f"{harness.binary_line(a.baseline)}"] if a.baseline else [])])
    peak_before = measure_peak(a)
    layers = {c: TorchLayer(*c) for c in configs}
    # Per (config, mode), per round: recur ms, PyTorch ms, baseline ms, the
    # round's paired PyTorch/recur ratio and baseline/recur speedup.
    res = {(c, m): ([], [], [], [], []) for c in configs for m in MODES}
    if a.method == "interleaved":
        servers = {"recur": RecurServer(a, a.bench)}
        if a.baseline:
            servers["baseline"] = RecurServer(a, a.baseline)
        for c in configs:  # warm-up: a call of each mode on each side (the server builds the layer)
            for m in MODES:
                for srv in servers.values():
                    srv.once(c, m)
                layers[c].once(m)
        for r in range(a.repeats):
            for i, c in enumerate(configs):
                names = ["recur", "torch"] + (["baseline"] if a.baseline else [])
                k = (r + i) % len(names)
                names = names[k:] + names[:k]
                for m in MODES:
                    calls = {n: [] for n in names}
                    for _ in range(a.inner):  # single calls, the sides alternating
                        for n in names:
                            calls[n].append(layers[c].once(m) if n == "torch" else servers[n].once(c, m))
                    rv, tv, bv, pv, sv = res[(c, m)]
                    rv.append(statistics.median(calls["recur"]))
                    tv.append(statistics.median(calls["torch"]))
                    pv.append(statistics.median(t / x for t, x in zip(calls["torch"], calls["recur"])))
                    if a.baseline:
                        bv.append(statistics.median(calls["baseline"]))
                        sv.append(statistics.median(b / x for b, x in zip(calls["baseline"], calls["recur"])))
            print(f"# round {r + 1}/{a.repeats} done (load {harness.load()})", file=sys.stderr, flush=True)
        for srv in servers.values():
            srv.close()
    else:
        for r in range(a.repeats):
            for i, c in enumerate(configs):
                sides = [("recur", lambda: recur_trial(a, c)), ("torch", lambda: layers[c].trial(a.inner))]
                if a.baseline:
                    sides.append(("baseline", lambda: recur_trial(a, c, a.baseline)))
                    k = (r + i) % 3
                    sides = sides[k:] + sides[:k]
                elif (r + i) % 2:
                    sides.reverse()
                got = {name: f() for name, f in sides}
                for m in MODES:
                    rv, tv, bv, pv, sv = res[(c, m)]
                    rv.append(got["recur"][m])
                    tv.append(got["torch"][m])
                    pv.append(tv[-1] / rv[-1])
                    if a.baseline:
                        bv.append(got["baseline"][m])
                        sv.append(bv[-1] / rv[-1])
            print(f"# round {r + 1}/{a.repeats} done (load {harness.load()})", file=sys.stderr, flush=True)
    rows = []
    for c in configs:
        for m in MODES:
            rv, tv, bv, pv, sv = res[(c, m)]
            rs, ts = harness.stats(rv), harness.stats(tv)
            bs = harness.stats(bv) if bv else None
            pst = harness.stats(pv)
            paired = pst["median"]
            speedup = statistics.median(sv) if sv else None
            rows.append(dict(cell=c[0], H=c[1], B=c[2], T=c[3], I=c[4], mode=m,
                             recur_ms=rs["median"], pytorch_ms=ts["median"], ratio=ts["median"] / rs["median"],
                             paired_ratio=paired, paired_min=pst["min"], paired_max=pst["max"],
                             paired_spread=pst["spread"], baseline_ms=bs["median"] if bs else None,
                             baseline_spread=bs["spread"] if bs else None, speedup=speedup,
                             recur_min_ms=rs["min"], recur_max_ms=rs["max"], recur_spread=rs["spread"],
                             pytorch_min_ms=ts["min"], pytorch_max_ms=ts["max"], pytorch_spread=ts["spread"],
                             repeats=a.repeats, flag=harness.flag(rs, ts, a.max_spread, pst),
                             _r=rs, _t=ts, _b=bs, _p=pst))
    peak_after = measure_peak(a)
    peak = max(peak_before or 0, peak_after or 0) or None
    for w in rows:
        fl = gflop(w["cell"], w["H"], w["B"], w["T"], w["I"], w["mode"])
        w["recur_gflops"] = fl / (w["recur_ms"] / 1000)
        w["peak_share"] = w["recur_gflops"] / peak if peak else None
        w["peak_share_for_2x"] = 2 * fl / (w["pytorch_ms"] / 1000) / peak if peak else None
    head.append(f"load average after {harness.load()}")
    head.append("peak: " + (f"{peak:.1f} GFLOP/s float32 FMA on the pinned CPUs (bench_cpu_peak --threads "
                            f"{a.threads}: {peak_before:.1f} before the rounds, {peak_after:.1f} after; the "
                            f"higher); GFLOP/s: the layer's multiply-adds (gflop() in this script; gate math "
                            f"not counted) over recur's median; share: of that peak; 2x needs: the share "
                            f"recur would need to run at twice PyTorch's median"
                            if peak else "bench_cpu_peak not found: no GFLOP/s columns"))
    summ = harness.summary(rows, label="recur/PyTorch (samples/s)",
                           name=lambda r: f"{r['cell']} H{r['H']} B{r['B']} {r['mode']}")
    lines = [*(f"- {h}" for h in head), "",
             "| cell | H | B | T | I | mode | recur ms | recur min-max | recur spread | PyTorch ms | "
             "PyTorch min-max | PyTorch spread | recur/PyTorch (samples/s) | paired | paired min-max | paired spread | flag | "
             "recur GFLOP/s | share of peak | 2x needs |"
             + (" baseline ms | baseline spread | speedup over baseline |" if a.baseline else ""),
             "|---" * 20 + "|" + ("---|---|---|" if a.baseline else "")]
    for w in rows:
        lines.append(f"| {w['cell']} | {w['H']} | {w['B']} | {w['T']} | {w['I']} | {w['mode']} | "
                     f"{w['recur_ms']:.2f} | {w['recur_min_ms']:.2f}-{w['recur_max_ms']:.2f} | "
                     f"{harness.fmt_spread(w['_r'])} | {w['pytorch_ms']:.2f} | "
                     f"{w['pytorch_min_ms']:.2f}-{w['pytorch_max_ms']:.2f} | {harness.fmt_spread(w['_t'])} | "
                     f"{w['ratio']:.2f} | {w['paired_ratio']:.2f} | {w['paired_min']:.2f}-{w['paired_max']:.2f} | "
                     f"{harness.fmt_spread(w['_p'])} | {w['flag']} | "
                     f"{w['recur_gflops']:.1f} | " + (f"{100 * w['peak_share']:.0f}% | {100 * w['peak_share_for_2x']:.0f}% |"
                                                     if peak else "- | - |")
                     + (f" {w['baseline_ms']:.2f} | {harness.fmt_spread(w['_b'])} | {w['speedup']:.2f} |"
                        if a.baseline else ""))
    lines += ["", summ]
    table = "\n".join(lines)
    print(table)
    if a.no_write:
        return
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "rnn_cpu_vs_pytorch.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "rnn_cpu_vs_pytorch.csv"), "w") as f:
        f.write("".join(f"# {h}\n" for h in head + [summ]))
        fields = [k for k in rows[0] if not k.startswith("_")]
        wr = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        wr.writeheader()
        for w in rows:
            wr.writerow({k: ("" if v is None else f"{v:.4f}" if isinstance(v, float) else v)
                         for k, v in w.items() if not k.startswith("_")})


if __name__ == "__main__":
    main()
