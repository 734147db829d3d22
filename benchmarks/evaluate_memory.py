"""Peak memory of evaluate against the size of the data set.

Run: .venv/bin/python benchmarks/evaluate_memory.py [--samples 512]

A small CNN on 128×128×3 images (float reference and its int8 variant, built here), and data
sets of 1×, 4× and 10× ``--samples`` images (196 KB each) as an uncompressed ``.npz`` and as
an ``.npy``, written piece by piece so this script never holds them. Each evaluation runs in a
fresh process (one worker, no benchmark) that reports its peak RSS (``VmHWM``); the baseline is
the same evaluation at 1×, measured in this run. The target is ≤ 1.05× at 4× and 10×.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _models import conv_net

SHAPE = (128, 128, 3)
PIECE = 256  # samples written at a time

CHILD = """
import sys, quantlens
quantlens.evaluate(sys.argv[1], [sys.argv[2]], sys.argv[3], workers=1, bench=False)
print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
"""


def write_npy(path: Path, n: int, rng: np.random.Generator) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, *SHAPE))
    for a in range(0, n, PIECE):
        out[a : a + PIECE] = rng.random((min(PIECE, n - a), *SHAPE), dtype=np.float32)
    out.flush()
    del out


def write_npz(path: Path, npy: Path, n: int) -> None:
    """An uncompressed .npz (what numpy.savez writes) holding ``npy`` as x and labels y."""
    labels = path.with_suffix(".y.npy")
    np.save(labels, np.arange(n) % 10)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.write(npy, "x.npy")
        zf.write(labels, "y.npy")
    labels.unlink()


def peak_mb(ref: Path, cand: Path, data: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ref), str(cand), str(data)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ref, cand = conv_net(out, size=128), conv_net(out, size=128, int8=True)
        peaks: dict[tuple[str, int], float] = {}
        for times in (1, 4, 10):
            n = args.samples * times
            npy = out / f"x{times}.npy"
            write_npy(npy, n, rng)
            npz = out / f"xy{times}.npz"
            write_npz(npz, npy, n)
            for kind, path in (("npy", npy), ("npz", npz)):
                peaks[kind, times] = peak_mb(ref, cand, path)
            npy.unlink()
            npz.unlink()
        for kind in ("npy", "npz"):
            base = peaks[kind, 1]
            print(f".{kind}: peak RSS {base:.0f} MB at {args.samples:,} samples; "
                  + "; ".join(f"{t}×: {peaks[kind, t]:.0f} MB = {peaks[kind, t] / base:.3f}"
                              for t in (4, 10))
                  + " (target <= 1.05)")  # fmt: skip


if __name__ == "__main__":
    main()
