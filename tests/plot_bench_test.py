#!/usr/bin/env python3
"""Test of bench/plot_bench.py on tests/data/bench_cudnn_fixture.csv (made-up
numbers in bench_cudnn's format): the fixture's header must be the one
bench/bench_cudnn.cpp prints (kCsvHeader), and for each device in the fixture
the script must write a table with exactly that device's rows and a chart, in
the automatic format and as SVG (which must parse as XML).

    python3 tests/plot_bench_test.py SOURCE_DIR WORK_DIR"""
import csv
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    src, work = sys.argv[1], sys.argv[2]
    fixture = os.path.join(src, "tests", "data", "bench_cudnn_fixture.csv")
    script = os.path.join(src, "bench", "plot_bench.py")

    # The fixture must follow the format bench_cudnn prints.
    code = open(os.path.join(src, "bench", "bench_cudnn.cpp")).read()
    m = re.search(r'kCsvHeader\s*=\s*((?:\s*"[^"]*")+)\s*;', code)
    if not m:
        fail("kCsvHeader not found in bench/bench_cudnn.cpp")
    header = "".join(re.findall(r'"([^"]*)"', m.group(1)))
    lines = [l.rstrip("\n") for l in open(fixture) if l.strip() and not l.startswith("#")]
    if lines[0] != header:
        fail(f"the fixture's header differs from bench_cudnn's:\n  {lines[0]}\n  {header}")
    rows = list(csv.DictReader(lines))
    by_device = {}
    for r in rows:
        by_device.setdefault(r["device"], []).append(r)

    for fmt in ("auto", "svg"):
        out = os.path.join(work, fmt)
        shutil.rmtree(out, ignore_errors=True)
        p = subprocess.run([sys.executable, script, "--out", out, "--format", fmt, fixture],
                           capture_output=True, text=True)
        print(p.stdout + p.stderr, end="")
        if p.returncode != 0:
            fail(f"plot_bench.py --format {fmt} exited {p.returncode}")
        if not p.stdout.strip().splitlines()[-1].startswith("charts: "):
            fail("the last line does not say how the charts were drawn")
        for device, rs in by_device.items():
            stem = os.path.join(out, "bench_cudnn_fixture-" + re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-"))
            md = stem + ".md"
            charts = [stem + e for e in (".png", ".svg") if os.path.exists(stem + e)]
            if not os.path.exists(md):
                fail(f"no table {md}")
            if len(charts) != 1 or os.path.getsize(charts[0]) == 0:
                fail(f"expected one non-empty chart for {stem}, found {charts}")
            if fmt == "svg":
                if not charts[0].endswith(".svg"):
                    fail("--format svg did not write SVG")
                ET.parse(charts[0])
            # The configurations' table: from its header row to the first line that is not a row.
            text = open(md).read().splitlines()
            start = [i for i, l in enumerate(text) if l.startswith("| cell | H | B | T | I | masked | mode |")]
            if len(start) != 1:
                fail(f"{md}: expected one table of configurations, found {len(start)}")
            body = []
            for l in text[start[0] + 2:]:
                if not l.startswith("| "):
                    break
                body.append(l)
            want = sorted((r["cell"], r["H"], r["B"], r["T"], r["I"], "yes" if r["masked"] == "1" else "no",
                           r["mode"]) for r in rs)
            got = sorted(tuple(c.strip() for c in l.strip().strip("|").split("|")[:7]) for l in body)
            if got != want:
                fail(f"{md}: table rows {got} differ from the fixture's {want}")
            print(f"ok: {md} ({len(got)} rows), {charts[0]}")
    print("PASS")


if __name__ == "__main__":
    main()
