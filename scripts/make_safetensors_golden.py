#!/usr/bin/env python3
"""safetensors files between PyTorch and recur, both ways (docs/checkpoints.md).

Write mode (the default) writes tests/golden/torch_<module>.safetensors: one
PyTorch module each (nn.LSTM, nn.GRU, nn.Linear, nn.Conv1d, nn.Embedding) with a
fixed seed, its state_dict under the layer name "0." (the keys of an
nn.Sequential whose first layer it is), a fixed random "input" and PyTorch's
float32 "output" for it. Inputs and outputs are in recur's layouts: batch first
[B, T, features] for the recurrent layers and Conv1d (PyTorch's Conv1d works on
[B, C, T], so the script transposes), int32 ids for Embedding. The metadata
says which module produced the file: "module" (its class name) and
"module.args" (its constructor's keyword arguments, JSON).

    /usr/bin/python3 scripts/make_safetensors_golden.py [OUTDIR]

Check mode reads files in the same layout (written by recur: the CTest test
safetensors.pytorch_reads_recur), builds the module the metadata names, loads
the "0." tensors with load_state_dict(strict=True), runs PyTorch on "input" and
requires "output" to a relative error of 1e-5. Exits 0 when every file
matches, 1 when one does not, 77 (CTest's skip) when PyTorch is missing.

    /usr/bin/python3 scripts/make_safetensors_golden.py --check FILE...

The safetensors format is read and written here with struct and json alone
(the `safetensors` package is not needed): 8 bytes little-endian header length,
the JSON header padded with spaces to a multiple of 8, then the data."""
import json
import os
import struct
import sys

try:
    import torch
except ImportError:
    print("SKIPPED: PyTorch is not installed for " + sys.executable)
    sys.exit(77)

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}
RTOL = 1e-5


def write_safetensors(path, tensors, metadata):
    """tensors: (name, tensor) pairs, written in that order; metadata: str -> str."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors:
        blob = t.detach().cpu().contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns ({name: tensor}, metadata); checks that the offsets tile the data exactly."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e_end = e["data_offsets"]
        dtype = DTYPES[e["dtype"]]
        numel = 1
        for d in e["shape"]:
            numel *= d
        if b != end or e_end - b != numel * torch.empty((), dtype=dtype).element_size():
            raise ValueError(f"{path}: tensor {name}: data_offsets {e['data_offsets']} do not fit")
        end = e_end
        raw = bytearray(body[b:e_end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(e["shape"])
    if end != len(body):
        raise ValueError(f"{path}: the data section has {len(body)} bytes, the tensors {end}")
    return tensors, metadata


# name -> (constructor keyword arguments, input maker); the seeds are the
# files' order. batch_first so the recurrent layers take recur's [B, T, I].
B, T = 2, 5
MODULES = {
    "lstm": ("LSTM", {"input_size": 3, "hidden_size": 4, "batch_first": True}),
    "gru": ("GRU", {"input_size": 3, "hidden_size": 4, "batch_first": True}),
    "linear": ("Linear", {"in_features": 4, "out_features": 2}),
    "conv1d": ("Conv1d", {"in_channels": 3, "out_channels": 5, "kernel_size": 3}),
    "embedding": ("Embedding", {"num_embeddings": 10, "embedding_dim": 4}),
}


def make_input(cls, args):
    if cls in ("LSTM", "GRU"):
        return torch.rand(B, T, args["input_size"]) * 2 - 1
    if cls == "Linear":
        return torch.rand(3, args["in_features"]) * 2 - 1
    if cls == "Conv1d":
        return torch.rand(B, T, args["in_channels"]) * 2 - 1  # recur's [B, T, C]
    return torch.randint(0, args["num_embeddings"], (B, T), dtype=torch.int32)


def run(module, cls, x):
    """PyTorch's output for recur-layout input x, in recur's layout."""
    with torch.no_grad():
        if cls in ("LSTM", "GRU"):
            return module(x)[0]
        if cls == "Conv1d":
            return module(x.transpose(1, 2)).transpose(1, 2).contiguous()
        if cls == "Embedding":
            return module(x.long())
        return module(x)


def make(outdir):
    for seed, (name, (cls, args)) in enumerate(MODULES.items(), start=1):
        torch.manual_seed(seed)
        module = getattr(torch.nn, cls)(**args)
        x = make_input(cls, args)
        y = run(module, cls, x)
        tensors = [("0." + k, v) for k, v in module.state_dict().items()]
        tensors += [("input", x), ("output", y)]
        metadata = {"format": "pt", "module": cls, "module.args": json.dumps(args),
                    "producer": f"scripts/make_safetensors_golden.py, torch {torch.__version__}"}
        path = os.path.join(outdir, f"torch_{name}.safetensors")
        write_safetensors(path, tensors, metadata)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def check(path):
    tensors, metadata = read_safetensors(path)
    cls = metadata["module"]
    module = getattr(torch.nn, cls)(**json.loads(metadata["module.args"]))
    state = {k[2:]: v for k, v in tensors.items() if k.startswith("0.")}
    module.load_state_dict(state, strict=True)
    y = run(module, cls, tensors["input"])
    want = tensors["output"]
    if y.shape != want.shape:
        print(f"{path}: {cls}: PyTorch's output has shape {list(y.shape)}, the file's {list(want.shape)}")
        return False
    scale = (want.double().abs() + 0.01 * want.double().abs().max()).clamp(min=1e-30)
    err = ((y.double() - want.double()).abs() / scale).max()
    ok = bool(err <= RTOL)
    print(f"{path}: {cls}: PyTorch loaded {len(state)} tensors (strict); output {list(y.shape)}, "
          f"max relative error {float(err):.2e} ({'ok' if ok else 'FAILED'}, tolerance {RTOL})")
    return ok


def main(argv):
    if argv and argv[0] == "--check":
        if len(argv) < 2:
            print("usage: make_safetensors_golden.py --check FILE...")
            return 2
        results = [check(p) for p in argv[1:]]
        return 0 if all(results) else 1
    outdir = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
    make(os.path.normpath(outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
