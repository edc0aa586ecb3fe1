#!/usr/bin/env python3
"""Writes the synthetic review fixture of recur's `imdb` CLI test (tests/CMakeLists.txt):
imdb_{train,val,test}.tsv in the shared IMDB TSV form (label, id, rating, text).
Each review mixes neutral words with sentiment words whose balance gives the label, so a
small model learns it in a few epochs. Deterministic: run it again to get the same files."""
import random

POS = ["great", "wonderful", "loved", "superb", "brilliant", "moving", "excellent", "fun"]
NEG = ["awful", "boring", "hated", "terrible", "dull", "waste", "worst", "poor"]
NEUTRAL = ["the", "film", "movie", "plot", "actors", "a", "was", "and", "story", "it", "scene",
           "director", "ending", "really", "quite", "this", "of", "music", "cast", "very"]


def review(rng, label):
    own, other = (POS, NEG) if label else (NEG, POS)
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 12))]
    words += [rng.choice(own) for _ in range(rng.randint(2, 3))]
    words += [rng.choice(other) for _ in range(rng.randint(0, 1))]
    rng.shuffle(words)
    text = " ".join(words).capitalize() + rng.choice([".", "!", "...", " <br /><br />"])
    rating = rng.randint(7, 10) if label else rng.randint(1, 4)
    return rating, text


def write(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("label\tid\trating\ttext\n")
        for i in range(n):
            label = i % 2
            rating, text = review(rng, label)
            f.write(f"{label}\t{i}\t{rating}\t{text}\n")


write("imdb_train.tsv", 120, 1)
write("imdb_val.tsv", 40, 2)
write("imdb_test.tsv", 60, 3)
