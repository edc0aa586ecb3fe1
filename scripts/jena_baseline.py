#!/usr/bin/python3
"""The naive Jena baseline computed independently of recur (numpy only).

"The temperature in `delay` rows equals the temperature now", scored as the
mean absolute error over every window of the validation and the test split,
with the windows and splits that recur's data/timeseries.h defines:

  splits   train = rows [0, a), val = [a, a + b), test = [a + b, N), with
           a = floor(N * 200000 / 420551), b = floor(N * 100000 / 420551)
           (the Keras book's 200,000 / 100,000 of 420,551 rows);
  window   "now" row t: inputs rows t - lookback + 1 .. t (step 1 here),
           target = the temperature at row t + delay; a split [s, e) has
           the windows t = s + lookback - 1 .. e - delay - 1, so that every
           row a window reads, its target included, lies inside the split;
  scaling  each column normalised by the mean and the standard deviation
           (ddof=0) of the training rows; the MAE in degC is the normalised
           MAE times the temperature's std.

Usage: /usr/bin/python3 scripts/jena_baseline.py [FILE] [--lookback 240] [--delay 24]
FILE defaults to the bundled datasets/jena_climate_2009_2016_hourly.csv.gz
(plain or gzip CSV; the rows are taken in file order, as they are in the
bundled file, which is sorted and has no duplicate timestamps).

On the bundled file this prints (checked by tests/test_timeseries.cpp):
  rows 70038: train [0, 33307)  val [33307, 49960)  test [49960, 70038)
  val : 16390 windows, MAE 0.27776 (normalised) = 2.45765 degC
  test: 19815 windows, MAE 0.29300 (normalised) = 2.59248 degC
"""
import argparse
import gzip
import os

import numpy as np


def read(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt") as f:
        header = [h.strip().strip('"') for h in f.readline().split(",")]
        rows = [line.rstrip("\r\n").split(",") for line in f if line.strip()]
    columns = header[1:]
    data = np.array([[float(x) for x in r[1:]] for r in rows], dtype=np.float64)
    return columns, data


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "datasets", "jena_climate_2009_2016_hourly.csv.gz")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file", nargs="?", default=default)
    p.add_argument("--lookback", type=int, default=240, help="rows")
    p.add_argument("--delay", type=int, default=24, help="rows")
    p.add_argument("--target", default="T (degC)")
    args = p.parse_args()

    columns, data = read(args.file)
    n = len(data)
    a = n * 200000 // 420551
    b = n * 100000 // 420551
    mean = data[:a].mean(axis=0)
    std = data[:a].std(axis=0)
    norm = (data - mean) / std
    col = columns.index(args.target)
    temp = norm[:, col]
    print(f"rows {n}: train [0, {a})  val [{a}, {a + b})  test [{a + b}, {n})")
    for name, (s, e) in (("val", (a, a + b)), ("test", (a + b, n))):
        now = np.arange(s + args.lookback - 1, e - args.delay)
        mae = np.mean(np.abs(temp[now] - temp[now + args.delay]))
        print(f"{name:4}: {len(now)} windows, MAE {mae:.5f} (normalised) = "
              f"{mae * std[col]:.5f} degC")


if __name__ == "__main__":
    main()
