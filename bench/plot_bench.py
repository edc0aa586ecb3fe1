#!/usr/bin/env python3
"""Markdown tables and charts from the benchmark suite's CSV files.

    python3 bench/plot_bench.py [--out DIR] [--format auto|png|svg] CSV...

Reads each CSV (lines starting with '#' are context; they head the table) and
recognises it by its header:
  bench_cudnn          (build/bin/bench_cudnn): recur against cuDNN's RNN, per
                       GPU; one table and one chart per device in the file;
  bench_conv_cudnn     (build/bin/bench_conv_cudnn): recur's Conv1D against cuDNN;
  rnn_cpu_vs_pytorch   (bench/rnn_cpu_vs_pytorch.py): recur's layers against PyTorch;
  train_vs_pytorch     (bench/train_vs_pytorch.py, --device cpu or cuda): training
                       samples/s against PyTorch.
                       For these two, each side's spread (IQR / median of the
                       repeats), the paired ratio and its spread, and the row's
                       flag ("unstable": left out of the script's summary) are
                       shown when the CSV has them.
For each it writes a table <name>.md and a chart <name>.png or <name>.svg
into --out (default: the CSV's own folder), <name> being the CSV's file name
without .csv (for bench_cudnn with several devices in one file, followed by
-<device>); for the two Python comparisons, which write their own <name>.md,
the table is <name>.plot.md. Charts: PNG through matplotlib when it imports, else through
gnuplot when it is on the PATH, else SVG written by this script (--format
forces one: png fails without matplotlib or gnuplot). The last line printed
says which was used. Standard library only, matplotlib optional.

The charts plot ratios on a log scale with a line at 1:
  bench_cudnn: recur's time over cuDNN's best (below 1: recur is faster) against
    the hidden size, one panel per cell and mode, one colour per batch size, solid
    for T 240 and dashed for T 1000; configurations with I != H or a mask are in
    the table only;
  the others: one bar per row, recur against the peer, as each file defines it
    (CPU files: samples/s, above 1 recur is faster; conv: time, below 1 recur is
    faster)."""
import argparse
import csv
import io
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


# ---- reading -----------------------------------------------------------------------

def read_csv(path):
    """(comment lines without '# ', header, rows as dicts) of a CSV with '#' lines anywhere.
    A second header row (two tables in one file) ends the first table."""
    comments, lines = [], []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#"):
                comments.append(line.lstrip("#").strip())
            else:
                lines.append(line)
    if not lines:
        return comments, [], []
    header = next(csv.reader([lines[0]]))
    rows = []
    for row in csv.reader(io.StringIO("\n".join(lines[1:]))):
        if row == header:
            break
        if len(row) != len(header):
            comments.append("row with %d fields ignored: %s" % (len(row), ",".join(row)))
            continue
        rows.append(dict(zip(header, row)))
    return comments, header, rows


def kind_of(header):
    h = set(header)
    if "ratio_recur_cudnn" in h:
        return "bench_cudnn"
    if {"shape", "direction", "recur_us", "cudnn_us"} <= h:
        return "bench_conv_cudnn"
    if {"model", "recur_samples_per_s", "pytorch_samples_per_s"} <= h:
        return "train_vs_pytorch"
    if {"cell", "mode", "recur_ms", "pytorch_ms", "ratio"} <= h:
        return "rnn_cpu_vs_pytorch"
    return None


def num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def fmt(v, spec=".2f"):
    x = num(v)
    return "-" if x is None else format(x, spec)


def gmean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


# ---- figures: panels of series, drawn by one of three back ends ----------------------

class Panel:
    def __init__(self, title, xlabel, ylabel, kind="lines"):
        self.title, self.xlabel, self.ylabel, self.kind = title, xlabel, ylabel, kind
        self.series = []  # lines: (label, color, dashed, [(x, y)]); bars: one ("", color, False, [(label, y)])
        self.xlog2 = kind == "lines"

    def values(self):
        return [y for s in self.series for _, y in s[3] if y is not None and y > 0]


class Figure:
    def __init__(self, title, panels, legend=()):
        self.title, self.panels, self.legend = title, panels, list(legend)  # legend: (label, color, dashed)


def log_ticks(lo, hi):
    """1-2-5 ticks in [lo, hi]; every digit's when that gives fewer than 3."""
    for ms in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in ms if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            return ticks
    return ticks or [lo, hi]


def y_range(panel):
    vs = panel.values() + [1.0]
    lo, hi = min(vs), max(vs)
    return lo / 1.25, hi * 1.25


def tick_label(v):
    return ("%g" % v) if v >= 0.01 else ("%.0e" % v)


def render_svg(fig, path):
    cols = 2 if len(fig.panels) > 1 else 1
    rows = math.ceil(len(fig.panels) / cols)
    bars = any(p.kind == "bars" for p in fig.panels)
    pw, ph = 560, 400 if bars else 340
    legend_h = 28 if fig.legend else 0
    W, H = cols * pw, rows * ph + 40 + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{escape(fig.title)}</text>']
    if fig.legend:
        x = 20
        for label, color, dashed in fig.legend:
            dash = ' stroke-dasharray="6,4"' if dashed else ""
            out.append(f'<line x1="{x}" y1="{44}" x2="{x + 24}" y2="{44}" stroke="{color}" stroke-width="2"{dash}/>')
            out.append(f'<text x="{x + 28}" y="{48}">{escape(label)}</text>')
            x += 36 + 7 * len(label)
    for i, p in enumerate(fig.panels):
        ox, oy = (i % cols) * pw, 40 + legend_h + (i // cols) * ph
        l, r, t, b = ox + 64, ox + pw - 16, oy + 24, oy + ph - (120 if p.kind == "bars" else 44)
        out.append(f'<text x="{(l + r) / 2}" y="{oy + 16}" text-anchor="middle" font-size="12">{escape(p.title)}</text>')
        out.append(f'<rect x="{l}" y="{t}" width="{r - l}" height="{b - t}" fill="none" stroke="#333"/>')
        if not p.values():
            out.append(f'<text x="{(l + r) / 2}" y="{(t + b) / 2}" text-anchor="middle">no data</text>')
            continue
        lo, hi = y_range(p)
        Y = lambda v: b - (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * (b - t)
        for v in log_ticks(lo, hi):
            out.append(f'<line x1="{l}" y1="{Y(v):.1f}" x2="{r}" y2="{Y(v):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{l - 4}" y="{Y(v) + 4:.1f}" text-anchor="end">{tick_label(v)}</text>')
        out.append(f'<line x1="{l}" y1="{Y(1):.1f}" x2="{r}" y2="{Y(1):.1f}" stroke="#000" stroke-width="1.2"/>')
        out.append(f'<text transform="translate({ox + 14},{(t + b) / 2}) rotate(-90)" text-anchor="middle">'
                   f'{escape(p.ylabel)}</text>')
        out.append(f'<text x="{(l + r) / 2}" y="{oy + ph - 6}" text-anchor="middle">{escape(p.xlabel)}</text>')
        if p.kind == "lines":
            xs = sorted({x for s in p.series for x, _ in s[3]})
            xlo, xhi = math.log2(xs[0]), math.log2(xs[-1])
            span = (xhi - xlo) or 1
            X = lambda v: l + 12 + (math.log2(v) - xlo) / span * (r - l - 24)
            for v in xs:
                out.append(f'<text x="{X(v):.1f}" y="{b + 14}" text-anchor="middle">{v:g}</text>')
            for label, color, dashed, pts in p.series:
                pts = [(x, y) for x, y in sorted(pts) if y is not None and y > 0]
                if not pts:
                    continue
                dash = ' stroke-dasharray="6,4"' if dashed else ""
                d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
                out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
                for x, y in pts:
                    out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.5" fill="{color}"/>')
        else:
            _, color, _, pts = p.series[0]
            n = len(pts)
            bw = (r - l) / max(n, 1)
            for k, (label, y) in enumerate(pts):
                x0 = l + k * bw + bw * 0.15
                if y is not None and y > 0:
                    y0, y1 = sorted((Y(1), Y(y)))
                    out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{bw * 0.7:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                               f'fill="{color}"/>')
                    out.append(f'<text x="{x0 + bw * 0.35:.1f}" y="{min(y0, y1) - 3:.1f}" text-anchor="middle" '
                               f'font-size="9">{y:.2g}</text>')
                cx = x0 + bw * 0.35
                out.append(f'<text transform="translate({cx + 3:.1f},{b + 10}) rotate(-35)" text-anchor="end" '
                           f'font-size="9">{escape(label)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def render_matplotlib(fig, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    cols = 2 if len(fig.panels) > 1 else 1
    rows = math.ceil(len(fig.panels) / cols)
    f, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.0 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(fig.panels):]:
        ax.set_visible(False)
    for p, ax in zip(fig.panels, axes.flat):
        ax.set_title(p.title, fontsize=10)
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel, fontsize=9)
        if not p.values():
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
            continue
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=1)
        if p.kind == "lines":
            ax.set_xscale("log", base=2)
            for label, color, dashed, pts in p.series:
                pts = [(x, y) for x, y in sorted(pts) if y is not None and y > 0]
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], color=color, marker="o", markersize=3,
                            linestyle="--" if dashed else "-", label=label)
            xs = sorted({x for s in p.series for x, _ in s[3]})
            ax.set_xticks(xs)
            ax.set_xticklabels(["%g" % x for x in xs])
        else:
            _, color, _, pts = p.series[0]
            for k, (label, y) in enumerate(pts):
                if y is not None and y > 0:
                    ax.bar(k, y - 1, bottom=1, color=color, width=0.7)
                    ax.annotate("%.2g" % y, (k, y), ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(pts)))
            ax.set_xticklabels([label for label, _ in pts], rotation=35, ha="right", fontsize=7)
        lo, hi = y_range(p)
        ax.set_ylim(lo, hi)
        ticks = log_ticks(lo, hi)
        ax.set_yticks(ticks)
        ax.set_yticklabels([tick_label(v) for v in ticks])
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    if fig.legend:
        from matplotlib.lines import Line2D
        handles = [Line2D([0], [0], color=c, linestyle="--" if d else "-") for _, c, d in fig.legend]
        f.legend(handles, [l for l, _, _ in fig.legend], loc="upper center", ncol=min(len(fig.legend), 8),
                 fontsize=8, bbox_to_anchor=(0.5, 0.965))
    f.suptitle(fig.title, fontsize=11, y=0.995)
    f.tight_layout(rect=(0, 0, 1, 0.93 if fig.legend else 0.97))
    f.savefig(path, dpi=110)
    plt.close(f)


def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_gnuplot(fig, path):
    cols = 2 if len(fig.panels) > 1 else 1
    rows = math.ceil(len(fig.panels) / cols)
    with tempfile.TemporaryDirectory() as d:
        script = [f"set terminal pngcairo size {640 * cols},{400 * rows + 60} font ',9'",
                  f"set output {gp_str(path)}",
                  f"set multiplot layout {rows},{cols} title {gp_str(fig.title)}",
                  "set logscale y", "set grid ytics", "set key top left font ',7' samplen 2"]
        for i, p in enumerate(fig.panels):
            script += [f"set title {gp_str(p.title)}", f"set xlabel {gp_str(p.xlabel)}",
                       f"set ylabel {gp_str(p.ylabel)}"]
            if not p.values():
                script += ["unset logscale x", "set xrange [0:1]", "set yrange [0.5:2]",
                           "plot 1 notitle lc rgb '#000000'"]
                continue
            lo, hi = y_range(p)
            script.append(f"set yrange [{lo}:{hi}]")
            script.append("set ytics (" + ", ".join(f'"{tick_label(v)}" {v}' for v in log_ticks(lo, hi)) + ")")
            plots = []
            if p.kind == "lines":
                xs = sorted({x for s in p.series for x, _ in s[3]})
                script += ["set logscale x 2", f"set xrange [{xs[0] / 1.2}:{xs[-1] * 1.2}]",
                           "set xtics (" + ", ".join(f'"{x:g}" {x}' for x in xs) + ")"]
                for k, (label, color, dashed, pts) in enumerate(p.series):
                    pts = [(x, y) for x, y in sorted(pts) if y is not None and y > 0]
                    if not pts:
                        continue
                    f = os.path.join(d, f"p{i}_{k}.dat")
                    with open(f, "w") as fh:
                        fh.writelines(f"{x} {y}\n" for x, y in pts)
                    title = gp_str(label) if i == 0 else "notitle"
                    title = f"title {title}" if i == 0 else title
                    plots.append(f"{gp_str(f)} using 1:2 with linespoints {title} lc rgb '{color}' "
                                 f"dt {2 if dashed else 1} pt 7 ps 0.5")
            else:
                _, color, _, pts = p.series[0]
                f = os.path.join(d, f"p{i}.dat")
                with open(f, "w") as fh:
                    for k, (label, y) in enumerate(pts):
                        if y is not None and y > 0:
                            fh.write(f"{k} {y} {k - 0.35} {k + 0.35} {min(1, y)} {max(1, y)}\n")
                script += ["unset logscale x", f"set xrange [-0.6:{len(pts) - 0.4}]",
                           "set xtics rotate by 35 right font ',7' (" +
                           ", ".join(f"{gp_str(label)} {k}" for k, (label, _) in enumerate(pts)) + ")"]
                plots.append(f"{gp_str(f)} using 1:2:3:4:5:6 with boxxyerror notitle fs solid 0.8 "
                             f"lc rgb '{color}'")
            plots.append("1 notitle lc rgb '#000000' lw 1.5")
            script.append("plot " + ", ".join(plots))
            script.append("unset xtics; set xtics")
        script.append("unset multiplot")
        sf = os.path.join(d, "plot.gp")
        with open(sf, "w") as fh:
            fh.write("\n".join(script) + "\n")
        subprocess.run(["gnuplot", sf], check=True, capture_output=True, text=True)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise RuntimeError("gnuplot wrote no PNG")


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def choose_backend(fmt_arg):
    if fmt_arg == "svg":
        return "svg"
    if have_matplotlib():
        return "matplotlib"
    if shutil.which("gnuplot"):
        return "gnuplot"
    if fmt_arg == "png":
        sys.exit("plot_bench: --format png needs matplotlib or gnuplot; neither was found")
    return "svg"


def draw(fig, stem, backend):
    """Writes the chart; returns (path, what drew it). A PNG back end that fails falls back to SVG."""
    if backend in ("matplotlib", "gnuplot"):
        try:
            (render_matplotlib if backend == "matplotlib" else render_gnuplot)(fig, stem + ".png")
            return stem + ".png", "PNG via " + backend
        except Exception as e:  # noqa: BLE001 - report and fall back
            print(f"# plot_bench: {backend} failed ({e}); writing SVG", file=sys.stderr)
    render_svg(fig, stem + ".svg")
    return stem + ".svg", "SVG (written by plot_bench.py)"


# ---- one table and one chart per kind -------------------------------------------------

def md_table(head, rows):
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
           ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def cudnn_outputs(comments, rows, device):
    rows = sorted(rows, key=lambda r: (r["cell"], r["mode"], r["masked"], int(r["T"]), int(r["B"]), int(r["H"]),
                                       int(r["I"])))
    head = ["cell", "H", "B", "T", "I", "masked", "mode", "recur us/step", "cuDNN us/step", "cuDNN algorithm",
            "recur/cuDNN time", "recur TFLOP/s", "cuDNN TFLOP/s", "recur GB/s", "cuDNN GB/s", "err y", "err grad"]
    body = [[r["cell"], r["H"], r["B"], r["T"], r["I"], "yes" if r["masked"] == "1" else "no", r["mode"],
             fmt(r["recur_us_per_step"]), fmt(r["cudnn_us_per_step"]), r["cudnn_algo"],
             fmt(r["ratio_recur_cudnn"], ".3g"), fmt(r["recur_tflops"], ".3g"), fmt(r["cudnn_tflops"], ".3g"),
             fmt(r["recur_gbs"], ".3g"), fmt(r["cudnn_gbs"], ".3g"), r["err_y"], r["err_grad"]] for r in rows]
    first = rows[0] if rows else {}
    lines = [f"# recur against cuDNN's RNN on {device}", ""]
    if first:
        lines += [f"Driver {first['driver']}, CUDA driver {first['cuda_driver']}, runtime {first['cuda_runtime']}, "
                  f"cuDNN {first['cudnn']}; {first['dtype']}.", ""]
    lines += [f"    {c}" for c in comments] + [""] if comments else []
    summary = []
    for cell in ("lstm", "gru"):
        for mode in ("forward", "train"):
            rs = [num(r["ratio_recur_cudnn"]) for r in rows if r["cell"] == cell and r["mode"] == mode]
            rs = [x for x in rs if x]
            if rs:
                summary.append([cell, mode, len(rs), f"{gmean(rs):.3g}", f"{min(rs):.3g}", f"{max(rs):.3g}",
                                sum(x < 1 for x in rs)])
    if summary:
        lines += ["recur's time over cuDNN's best (below 1: recur is faster):", ""]
        lines += md_table(["cell", "mode", "configurations", "geometric mean", "min", "max", "recur faster in"],
                          summary) + [""]
    lines += md_table(head, body)
    panels = []
    for cell in ("lstm", "gru"):
        for mode in ("forward", "train"):
            p = Panel(f"{cell.upper()} {'inference' if mode == 'forward' else 'training (fwd + bwd)'}",
                      "hidden size H (I = H)", "recur time / cuDNN time")
            grid = [r for r in rows if r["cell"] == cell and r["mode"] == mode and r["masked"] == "0"
                    and r["I"] == r["H"]]
            Bs = sorted({int(r["B"]) for r in rows if r["masked"] == "0" and r["I"] == r["H"]})
            for T in sorted({int(r["T"]) for r in grid}):
                for k, B in enumerate(Bs):
                    pts = [(int(r["H"]), num(r["ratio_recur_cudnn"])) for r in grid
                           if int(r["T"]) == T and int(r["B"]) == B]
                    if pts:
                        p.series.append((f"B {B}, T {T}", COLORS[k % len(COLORS)], T != 240, pts))
            panels.append(p)
    Bs = sorted({int(r["B"]) for r in rows if r["masked"] == "0" and r["I"] == r["H"]})
    Ts = sorted({int(r["T"]) for r in rows if r["masked"] == "0" and r["I"] == r["H"]})
    legend = [(f"B {B}", COLORS[k % len(COLORS)], False) for k, B in enumerate(Bs)]
    legend += [(f"T {T}", "#444444", T != 240) for T in Ts]
    fig = Figure(f"recur / cuDNN time per step, {device} (below 1: recur faster)", panels, legend)
    return lines, fig


def conv_outputs(comments, rows, device):
    head = ["shape", "direction", "recur us", "cuDNN us", "cuDNN algorithm", "recur/cuDNN time", "max rel err"]
    body = [[r["shape"], r["direction"], r["recur_us"], r["cudnn_us"], r["cudnn_algo"], fmt(r["ratio"], ".3g"),
             r["max_rel_err"]] for r in rows]
    lines = [f"# recur's Conv1D against cuDNN on {device}", ""] + [f"    {c}" for c in comments] + [""]
    lines += md_table(head, body)
    p = Panel("Conv1D: recur time / cuDNN time (below 1: recur faster)", "", "recur / cuDNN time", "bars")
    p.series.append(("", COLORS[0], False, [(f"{r['shape'].split(' ')[0]} {r['direction'][:3]}",
                                              num(r["ratio"])) for r in rows]))
    return lines, Figure(f"recur Conv1D against cuDNN, {device}", [p])


def spread_columns(head, body, rows):
    """The spread and flag columns of the Python comparisons' CSVs, when they have
    them (written since issue 18; older files have neither)."""
    if not rows or "flag" not in rows[0]:
        return head, body
    pct = lambda v: "-" if num(v) is None else "%.1f%%" % (100 * num(v))
    if "paired_spread" in rows[0]:  # since 2026-12-06: the flag reads the paired ratios' spread
        fmt = lambda v: "-" if num(v) is None else "%.2f" % num(v)
        return (head + ["recur spread", "PyTorch spread", "paired", "paired spread", "flag"],
                [b + [pct(r.get("recur_spread")), pct(r.get("pytorch_spread")), fmt(r.get("paired_ratio")),
                      pct(r.get("paired_spread")), r.get("flag", "")] for b, r in zip(body, rows)])
    return (head + ["recur spread", "PyTorch spread", "flag"],
            [b + [pct(r.get("recur_spread")), pct(r.get("pytorch_spread")), r.get("flag", "")]
             for b, r in zip(body, rows)])


def cpu_rnn_outputs(comments, rows, device):
    head = ["cell", "H", "B", "T", "I", "mode", "recur ms", "PyTorch ms", "recur/PyTorch (samples/s)"]
    body = [[r["cell"], r["H"], r["B"], r["T"], r["I"], r["mode"], fmt(r["recur_ms"]), fmt(r["pytorch_ms"]),
             fmt(r["ratio"])] for r in rows]
    head, body = spread_columns(head, body, rows)
    lines = [f"# recur's recurrent layers against PyTorch, {device}", ""] + [f"    {c}" for c in comments] + [""]
    lines += md_table(head, body)
    p = Panel("recur / PyTorch samples/s (above 1: recur faster)", "", "recur / PyTorch samples/s", "bars")
    p.series.append(("", COLORS[2], False, [(f"{r['cell']} H{r['H']} B{r['B']} {'fwd' if r['mode'] == 'forward' else r['mode']}",
                                             num(r["ratio"]))
                                            for r in rows]))
    return lines, Figure(f"recur against PyTorch, recurrent layers, {device}", [p])


def train_outputs(comments, rows, device):
    gpu = any(r.get("device") == "cuda" for r in rows)
    head = ["model", "B", "T", "F", "recur samples/s", "PyTorch samples/s", "recur/PyTorch"]
    head += ["epoch s recur", "epoch s PyTorch"] if gpu else []
    body = [[r["model"], r["batch"], r["time"], r["features"], fmt(r["recur_samples_per_s"], ".1f"),
             fmt(r["pytorch_samples_per_s"], ".1f"), fmt(r["ratio"])] +
            ([fmt(r.get("epoch_s_recur")), fmt(r.get("epoch_s_pytorch"))] if gpu else []) for r in rows]
    head, body = spread_columns(head, body, rows)
    lines = [f"# Training samples/s, recur against PyTorch, {device}", ""] + [f"    {c}" for c in comments] + [""]
    lines += md_table(head, body)
    p = Panel("recur / PyTorch training samples/s (above 1: recur faster)", "", "recur / PyTorch samples/s", "bars")
    p.series.append(("", COLORS[1], False, [(r["model"], num(r["ratio"])) for r in rows]))
    return lines, Figure(f"Training throughput against PyTorch, {device}", [p])


def process(path, out_dir, backend):
    comments, header, rows = read_csv(path)
    kind = kind_of(header)
    if not header:
        print(f"# plot_bench: {path}: no table, only comments ({comments[-1] if comments else 'empty'}); skipped")
        return []
    if kind is None:
        print(f"# plot_bench: {path}: not a CSV this script knows (header: {','.join(header)[:80]}); skipped")
        return []
    stem0 = os.path.join(out_dir or os.path.dirname(os.path.abspath(path)),
                         os.path.splitext(os.path.basename(path))[0])
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    jobs = []
    if kind == "bench_cudnn":
        devices = sorted({r["device"] for r in rows})
        for d in devices or ["(no rows)"]:
            stem = stem0 if len(devices) <= 1 else f"{stem0}-{slug(d)}"
            jobs.append((stem, cudnn_outputs(comments, [r for r in rows if r["device"] == d], d)))
    elif kind == "bench_conv_cudnn":
        d = rows[0]["device"] if rows else folder
        jobs.append((stem0, conv_outputs(comments, rows, d)))
    elif kind == "rnn_cpu_vs_pytorch":
        jobs.append((stem0, cpu_rnn_outputs(comments, rows, folder)))
    else:
        jobs.append((stem0, train_outputs(comments, rows, folder)))
    written = []
    # The Python comparisons write their own <name>.md; this one's goes beside it.
    md_ext = ".plot.md" if kind in ("train_vs_pytorch", "rnn_cpu_vs_pytorch") else ".md"
    for stem, (lines, fig) in jobs:
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        chart, how = draw(fig, stem, backend)
        md = stem + md_ext
        with open(md, "w") as f:
            f.write(f"<!-- written by bench/plot_bench.py from {os.path.basename(path)} -->\n")
            f.write("\n".join(lines[:2] + [f"![chart]({os.path.basename(chart)})", ""] + lines[2:]).rstrip() + "\n")
        print(f"{path} ({kind}, {len(rows)} rows): {md}, {chart} [{how}]")
        written.append((md, chart, how))
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", help="folder for the outputs (default: each CSV's own)")
    ap.add_argument("--format", choices=("auto", "png", "svg"), default="auto")
    a = ap.parse_args()
    backend = choose_backend(a.format)
    hows = set()
    for path in a.csv:
        for _, _, how in process(path, a.out, backend):
            hows.add(how)
    print("charts: " + (", ".join(sorted(hows)) if hows else "none written"))


if __name__ == "__main__":
    main()
