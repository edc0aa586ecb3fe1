"""What the recur-against-PyTorch CPU comparisons share so that their figures
hold still and say how they were made (issue 18).

Used by bench/rnn_cpu_vs_pytorch.py and bench/train_vs_pytorch.py:
  * pin(): one CPU set and one OpenMP setting for both sides. It sets the
    OpenMP environment (OMP_NUM_THREADS, OMP_WAIT_POLICY, OMP_PROC_BIND,
    OMP_PLACES) in os.environ and pins this process to the CPU set with
    os.sched_setaffinity, BEFORE torch is imported: libgomp reads its
    environment once, when it is loaded (by torch here, by recur's bench
    binary in its own process). recur's bench binaries are started as
    subprocesses of this process through child(), under taskset -c with the
    same CPU set, and inherit the environment; PyTorch gets
    torch.set_num_threads(threads) as well. recur
    links an OpenMP OpenBLAS, so the one OpenMP setting covers its GEMMs too.
  * stats(): median, min, max, quartiles and the relative spread of a row's
    repeats; spread = IQR / median (inter-quartile range of the repeats,
    statistics.quantiles(method="inclusive"), over their median). The IQR
    rather than (max - min) because with many repeats the full range grows
    with the count and one preempted repeat would condemn a row whose median
    is sound; min and max are reported beside it so the outliers still show.
  * A row is flagged "unstable" when either side's spread exceeds the
    threshold (default 0.10, --max-spread): its ratio is then uncertain by
    more than about 10%, too wide to tell, for instance, 1.8x from 2x; such
    rows stay in the table with the flag and are left out of the summary
    (geometric mean and minimum of the ratios). A row measured once has no
    spread and is flagged "single" the same way.
  * commit(): git rev-parse --short HEAD, with " (with uncommitted changes)"
    when tracked files outside bench/results/ differ from HEAD (the result
    files the scripts themselves write are not the code measured).

Default repeats: 11 interleaved rounds. With 11 the median lies between the
3rd and the 9th sorted value with 93% confidence whatever the distribution
(binomial, 1 - 2 P(X <= 2), X ~ B(11, 1/2)), so a row whose IQR is within the
threshold has its median known to within about that spread, and one or two
disturbed rounds move the median by at most one or two ranks. More rounds
would narrow that only slowly (21: 4th-18th at 99%), and on this 2-core
machine 11 rounds keep each script within a few minutes (--quick for smoke
tests)."""
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys

DEFAULT_REPEATS = 11
DEFAULT_MAX_SPREAD = 0.10
HERE = os.path.dirname(os.path.abspath(__file__))
CODE_EXCLUDES = ("*.py", "*.md", "bench/results", "docs", "tests")  # none of them builds a bench binary


def add_args(ap, threads_default=2):
    """The options both CPU comparisons share."""
    ap.add_argument("--threads", type=int, default=threads_default,
                    help="threads of each side: OMP_NUM_THREADS and torch.set_num_threads (default %(default)s)")
    ap.add_argument("--cpus", help="CPU ids both sides are pinned to, e.g. 0,1 or 0-1 (default: the first "
                                   "--threads CPUs this process may run on)")
    ap.add_argument("--omp-wait-policy", default="passive", choices=("passive", "active"),
                    help="OMP_WAIT_POLICY of both sides (default passive: idle OpenMP threads sleep "
                         "instead of spinning, which on a shared machine makes every region pay for "
                         "the spinning of the other threads)")
    ap.add_argument("--proc-bind", default="close",
                    help="OMP_PROC_BIND of both sides, with OMP_PLACES=cores (default close: each thread "
                         "stays on one core of the set); 'unset' leaves both unset")
    ap.add_argument("--max-spread", type=float, default=DEFAULT_MAX_SPREAD,
                    help="flag a row 'unstable' and leave it out of the summary when either side's "
                         "IQR/median exceeds this (default %(default)s)")
    ap.add_argument("--binary-commit",
                    help="the commit recur's bench binary was built from, when it is not this checkout's HEAD "
                         "(a baseline binary kept from an earlier commit); written into the table's header")
    ap.add_argument("--note", help="a line for the table's header, e.g. what else ran on the machine")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 repeats and the fewest steps; implies --no-write unless --out is given")


def parse_cpus(spec):
    out = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            out.update(range(int(lo), int(hi) + 1))
        elif part:
            out.add(int(part))
    return sorted(out)


def pin(a, enabled=True):
    """Sets the OpenMP environment and this process's CPU affinity (inherited by
    the bench binaries); must run before torch is imported. Returns the header
    line that records it."""
    if "torch" in sys.modules:
        raise RuntimeError("harness.pin() must run before torch is imported (libgomp reads its environment once)")
    env = {"OMP_NUM_THREADS": str(a.threads), "OMP_WAIT_POLICY": a.omp_wait_policy.upper()}
    bind = a.proc_bind if enabled else "unset"
    if bind != "unset":
        env.update(OMP_PROC_BIND=bind, OMP_PLACES="cores")
    else:
        for k in ("OMP_PROC_BIND", "OMP_PLACES"):
            os.environ.pop(k, None)
    os.environ.update(env)
    allowed = sorted(os.sched_getaffinity(0))
    if enabled:
        cpus = parse_cpus(a.cpus) if a.cpus else allowed[:a.threads]
        os.sched_setaffinity(0, cpus)
        cpus = sorted(os.sched_getaffinity(0))
        where = (f"both sides pinned to CPUs {','.join(map(str, cpus))} (this process: sched_setaffinity; "
                 f"recur's bench binary: taskset -c {','.join(map(str, cpus))})")
        if len(cpus) < a.threads:
            where += f"; WARNING: {a.threads} threads on {len(cpus)} CPUs"
    else:
        where = f"not pinned (CPUs {','.join(map(str, allowed))})"
    a.pin_env = env
    a.pin_cpus = cpus if enabled else None
    return where + "; " + " ".join(f"{k}={v}" for k, v in env.items()) + \
        ("" if bind != "unset" else " OMP_PROC_BIND/OMP_PLACES unset")


def child(a, cmd):
    """cmd started on the pinned CPU set. Not left to inheritance: with
    OMP_PROC_BIND set, PyTorch's libgomp binds this process's main thread to
    the first core of the set once it has run a parallel region, and a child
    would inherit that one core."""
    cpus = getattr(a, "pin_cpus", None)
    return (["taskset", "-c", ",".join(map(str, cpus))] if cpus else []) + list(cmd)


class Server:
    """A recur bench binary run with --serve on the pinned CPUs: each
    request is one line on its stdin, each reply one line, the milliseconds
    of one timed call (or 'error: ...', which ends the run)."""

    def __init__(self, a, cmd):
        self.name = os.path.basename(cmd[0])
        self.p = subprocess.Popen(child(a, list(cmd) + ["--serve"]), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def request(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        if not reply or reply.startswith("error"):
            raise SystemExit(f"{self.name} --serve: {reply or 'no reply (a binary without --serve?)'}")
        return float(reply)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def git(*args):
    return subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True)


def commit():
    """Short HEAD, with ' (with uncommitted changes)' when tracked files outside
    bench/results/ differ from it."""
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results")
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def binary_line(path, built_at=None):
    """The bench binary and its build time; a warning when it is older than HEAD's commit
    (none when built_at, --binary-commit, says which commit it was built from)."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return f"{path} (missing)"
    built = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    line = f"{path} built {built}"
    if built_at:
        return line + f" from commit {built_at}"
    # The last commit that changed what the binary is built from (not the
    # Python scripts, the docs, the tests or the results).
    ct = git("log", "-1", "--format=%ct", "HEAD", "--", ":/", *(f":(exclude,top){p}" for p in CODE_EXCLUDES))
    if ct.returncode == 0 and ct.stdout.strip() and mtime < int(ct.stdout.strip()):
        line += " (WARNING: older than the last commit that changed the code or build of the library or the benches; rebuild it)"
    return line


def torch_threads_line(torch):
    """What PyTorch's OpenMP says it runs with."""
    info = torch.__config__.parallel_info()
    keep = [l.strip() for l in info.splitlines()
            if l.strip().startswith(("at::get_num_threads", "omp_get_max_threads", "ATen parallel backend"))]
    return "; ".join(keep)


def stats(xs):
    """Median, min, max, q1, q3 and spread (IQR / median; None for one value)."""
    xs = sorted(xs)
    med = statistics.median(xs)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        spread = (q3 - q1) / med if med else math.inf
    else:
        q1 = q3 = med
        spread = None
    return dict(median=med, min=xs[0], max=xs[-1], q1=q1, q3=q3, spread=spread, n=len(xs))


def flag(a_stats, b_stats, max_spread, paired=None):
    """'' when both sides' spreads are within max_spread; 'single' for one
    repeat. Without paired (the stats of each repeat's own ratio): 'unstable'
    otherwise. With it: 'unstable' when the paired ratios spread more than
    max_spread; 'drift' when only the sides do: the machine's speed moved
    between repeats (on a shared VM it does, by up to a third within a minute)
    and both sides moved with it, so the same-repeat ratio still reads."""
    if a_stats["spread"] is None or b_stats["spread"] is None:
        return "single"
    sides = max(a_stats["spread"], b_stats["spread"]) > max_spread
    if paired is None:
        return "unstable" if sides else ""
    if paired["spread"] is None or paired["spread"] > max_spread:
        return "unstable"
    return "drift" if sides else ""


def readable(flag_value):
    """Whether a row with this flag goes into the summary."""
    return flag_value in ("", "drift")


def fmt_spread(s):
    return "-" if s["spread"] is None else f"{100 * s['spread']:.1f}%"


def summary(rows, key="ratio", label="recur/PyTorch", name=None):
    """The summary line over the readable rows (no flag, or 'drift'); with
    name (a row's label) and rows carrying paired_min, also the lowest
    single-repeat ratio over every row, flagged ones included: a bound that
    no noisy repeat can flatter."""
    ok = [r[key] for r in rows if readable(r["flag"]) and r[key] > 0]
    bad = len(rows) - len(ok)
    low = ""
    mins = [r for r in rows if r.get("paired_min") is not None]
    if name is not None and mins:
        w = min(mins, key=lambda r: r["paired_min"])
        low = f"; the lowest single-repeat ratio over all {len(rows)} rows: {w['paired_min']:.2f} ({name(w)})"
    if not ok:
        return f"summary: no readable row ({bad} flagged); no ratio to read" + low
    g = math.exp(sum(map(math.log, ok)) / len(ok))
    return (f"summary over the {len(ok)} readable rows (no flag, or drift): {label} geometric mean {g:.2f}, minimum {min(ok):.2f}"
            + (f"; {bad} row(s) flagged and left out" if bad else "") + low)


def header(a, script, pin_line, torch, extra=()):
    """The lines that head every table: device, versions, commit, pinning,
    repeats, spread rule, command."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f"{sys.executable} {script} " + " ".join(shlex.quote(s) for s in sys.argv[1:])
    built = getattr(a, "binary_commit", None)
    which = (f"recur binary built at commit {built} (scripts at {commit()})" if built else f"commit {commit()}")
    lines = [f"{stamp}; {which}; CPU: {cpu_name()}, {os.cpu_count()} CPUs; "
             f"load average before {load()}",
             f"command: {cmd.strip()}",
             f"threads: {a.threads} each side; {pin_line}",
             f"PyTorch {torch.__version__}: {torch_threads_line(torch)}",
             *extra,
             f"spread: (Q3 - Q1) / median of the repeats; a row is flagged unstable when the spread of its "
             f"paired ratios (each repeat's recur/PyTorch) exceeds {100 * a.max_spread:.0f}%, and drift when only "
             f"a side's own spread does (the machine's speed moved between repeats and both sides with it); "
             f"single: one repeat, no spread; unstable and single rows are left out of the summary"]
    if getattr(a, "note", None):
        lines.append(f"note: {a.note}")
    if a.quick:
        lines.append("QUICK MODE (smoke test): too few repeats and steps to read")
    return lines


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load():
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _self_test():
    """python3 bench/harness.py: checks the statistics and the flag (no torch needed)."""
    s = stats([10, 11, 12, 13, 100])  # one outlier: the IQR ignores it, max shows it
    assert s["median"] == 12 and s["min"] == 10 and s["max"] == 100
    assert abs(s["spread"] - (13 - 11) / 12) < 1e-12, s
    steady, noisy = stats([100, 101, 99, 100, 102]), stats([50, 100, 150, 80, 120])
    assert flag(steady, steady, 0.10) == "" and flag(steady, noisy, 0.10) == "unstable"
    assert flag(stats([1.0]), steady, 0.10) == "single" and fmt_spread(stats([1.0])) == "-"
    # Paired: both sides slowed together (drift, kept) or the ratio itself moved (unstable).
    assert flag(noisy, noisy, 0.10, stats([2.0, 2.02, 1.98, 2.0, 2.01])) == "drift"
    assert flag(noisy, noisy, 0.10, stats([1.0, 2.0, 3.0, 1.5, 2.5])) == "unstable"
    assert flag(steady, steady, 0.10, stats([1.0, 2.0, 3.0, 1.5, 2.5])) == "unstable"
    assert flag(steady, steady, 0.10, stats([2.0, 2.0, 2.0])) == ""
    rows = [dict(ratio=2.0, flag=""), dict(ratio=8.0, flag="drift"), dict(ratio=0.5, flag="unstable")]
    assert "geometric mean 4.00, minimum 2.00; 1 row(s) flagged" in summary(rows), summary(rows)
    for r, low in zip(rows, (1.9, 7.0, 0.4)):
        r["paired_min"], r["n"] = low, str(low)
    assert summary(rows, name=lambda r: r["n"]).endswith("single-repeat ratio over all 3 rows: 0.40 (0.4)"), summary(rows)
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    print("harness self-test: PASS")


if __name__ == "__main__":
    _self_test()
