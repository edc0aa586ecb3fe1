#!/usr/bin/env python3
"""Generates tests/golden/pytorch_rnn.json.gz: inputs, weights, outputs and
gradients of PyTorch's nn.LSTM, nn.GRU and nn.RNN (tanh) for fixed seeds, 1-2
layers, uni- and bidirectional, plus right-padded variable-length batches
(packed sequences). Computed in float64 so that recur's float32 results can be
held to a relative error of 1e-5 and its float64 results to 1e-10.

Needs PyTorch (Debian: apt-get install python3-torch; run with /usr/bin/python3).
    /usr/bin/python3 scripts/make_pytorch_golden.py
The loss whose gradients are stored is L = sum(y * R) + sum(h_n * S) (+ sum(c_n * Sc)),
with R, S, Sc stored too."""
import gzip
import json
import sys

import torch

B, T, I, H = 3, 5, 4, 6


def flat(t):
    # 12 significant digits: far below float32 rounding, enough for a 1e-10 float64 check.
    return [float(f"{v:.12g}") for v in t.detach().reshape(-1).tolist()]


def round12(t):
    """Rounds in place to the 12 digits stored, so outputs follow from exactly the stored inputs."""
    with torch.no_grad():
        t.copy_(torch.tensor([float(f"{v:.12g}") for v in t.reshape(-1).tolist()],
                             dtype=t.dtype).reshape(t.shape))
    return t


def case(kind, layers, bidirectional, lengths, seed):
    torch.manual_seed(seed)
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[kind]
    net = cls(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True).double()
    D = 2 if bidirectional else 1
    for p in net.parameters():
        round12(p)
    x = round12(torch.rand(B, T, I, dtype=torch.float64) * 2 - 1).requires_grad_()
    h0 = round12(torch.rand(layers * D, B, H, dtype=torch.float64) * 2 - 1).requires_grad_()
    c0 = round12(torch.rand(layers * D, B, H, dtype=torch.float64) * 2 - 1).requires_grad_()
    init = (h0, c0) if kind == "LSTM" else h0
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, state = net(packed, init)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    else:
        y, state = net(x, init)
    h_n = state[0] if kind == "LSTM" else state
    R = round12(torch.rand_like(y) * 2 - 1)
    S = round12(torch.rand_like(h_n) * 2 - 1)
    loss = (y * R).sum() + (h_n * S).sum()
    Sc = None
    if kind == "LSTM":
        Sc = round12(torch.rand_like(state[1]) * 2 - 1)
        loss = loss + (state[1] * Sc).sum()
    loss.backward()
    c = {
        "cell": kind, "layers": layers, "bidirectional": bidirectional,
        "B": B, "T": T, "I": I, "H": H, "lengths": lengths,
        "x": flat(x), "h0": flat(h0), "y": flat(y), "h_n": flat(h_n), "R": flat(R), "S": flat(S),
        "dx": flat(x.grad), "dh0": flat(h0.grad), "params": {}, "grads": {},
    }
    if kind == "LSTM":
        c.update({"c0": flat(c0), "c_n": flat(state[1]), "Sc": flat(Sc), "dc0": flat(c0.grad)})
    for name, p in net.named_parameters():
        c["params"][name] = flat(p)
        c["grads"][name] = flat(p.grad)
    return c


def main():
    cases = []
    seed = 1
    for kind in ("LSTM", "GRU", "RNN"):
        for layers in (1, 2):
            for bi in (False, True):
                cases.append(case(kind, layers, bi, None, seed))
                seed += 1
        cases.append(case(kind, 1, True, [5, 2, 3], seed))  # packed, bidirectional
        seed += 1
        cases.append(case(kind, 2, False, [1, 5, 4], seed))  # packed, stacked
        seed += 1
    doc = {"generator": "scripts/make_pytorch_golden.py", "torch": torch.__version__, "cases": cases}
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/pytorch_rnn.json.gz"
    with gzip.open(out, "wt") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
