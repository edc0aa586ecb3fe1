#!/usr/bin/env python3
"""Per-review token counts of an IMDB TSV file (label, id, rating, text), one per line.

Tokenisation is Keras TextVectorization's default, byte for byte as recur's
C++ tokenize() (data/src/text_data.cpp): lowercase ASCII, delete the
punctuation of Keras's DEFAULT_STRIP_REGEX (!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'),
split on ASCII whitespace. So "<br />" becomes the token "br", as in Keras.
Non-ASCII bytes stay inside words. Lowercasing does not change counts; it is
here so the rule reads the same as the C++.

    python3 scripts/imdb_lengths.py /work/shared/datasets/imdb_train.tsv.gz datasets/imdb_train_lengths.txt.gz

The output is gzip with mtime 0, so the same input gives the same bytes.
Standard library only.
"""
import gzip
import re
import sys

PUNCTUATION = b"!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"
WHITESPACE = re.compile(rb"[ \t\n\r\v\f]+")


def count_tokens(text: bytes) -> int:
    text = text.lower().translate(None, PUNCTUATION)  # bytes.lower() is ASCII-only
    return sum(1 for t in WHITESPACE.split(text) if t)


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} IMDB_TSV_GZ OUT_TXT_GZ")
    lengths = []
    with gzip.open(argv[1], "rb") as f:
        header = f.readline().rstrip(b"\n")
        if header != b"label\tid\trating\ttext":
            sys.exit(f"{argv[1]}: unexpected header {header!r}")
        for line_no, line in enumerate(f, start=2):
            cols = line.rstrip(b"\n").split(b"\t")
            if len(cols) != 4:
                sys.exit(f"{argv[1]} line {line_no}: {len(cols)} columns, expected 4")
            lengths.append(count_tokens(cols[3]))
    with open(argv[2], "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                   filename="") as out:
        out.write("".join(f"{n}\n" for n in lengths).encode())
    lengths.sort()
    n = len(lengths)
    print(f"{n} reviews; tokens: min {lengths[0]}, median {lengths[n // 2]}, "
          f"mean {sum(lengths) / n:.1f}, max {lengths[-1]}")


if __name__ == "__main__":
    main(sys.argv)
