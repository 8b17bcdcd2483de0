#!/usr/bin/python3
"""The h5py side of the patch-read comparison: random cubic patches and whole volumes read with
h5py (python3-h5py from Debian) from the datasets patch_read_bench writes, with the same HDF5
chunk cache settings, one thread. Prints one line per case, in the same units as the C++ side.

    /usr/bin/python3 benchmarks/peers/patch_read_h5py.py --dir /tmp/vitruvian_patch_bench [--size 256] [--seconds 2]
"""
import argparse
import time

import h5py
import numpy as np

LAYOUTS = ["contiguous", "chunked", "compressed", "lz4"]  # lz4: HDF5's filter plugin (hdf5-filter-plugin)


def timed_reads(dataset, edge, seconds, rng):
    size = dataset.shape
    n, spent = 0, 0.0
    while spent < seconds:
        z, y, x = (int(rng.integers(0, size[a] - edge + 1)) for a in range(3))
        t0 = time.perf_counter()
        patch = dataset[z:z + edge, y:y + edge, x:x + edge]
        spent += time.perf_counter() - t0
        n += 1
    assert patch.shape == (edge, edge, edge)
    return n, spent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp/vitruvian_patch_bench")
    parser.add_argument("--size", type=int, default=256, help="volume edge the datasets were written with")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    for layout in LAYOUTS:
        for cache_mib in ([0] if layout == "contiguous" else [0, 64]):
            # 0: HDF5's default cache (1 MiB), as the C++ side's "cache 1MiB" case.
            kwargs = {} if cache_mib == 0 else {"rdcc_nbytes": cache_mib << 20, "rdcc_nslots": 12421, "rdcc_w0": 0.75}
            with h5py.File(f"{args.dir}/{layout}_{args.size}.h5", "r", **kwargs) as f:
                image = f["studies/study0/series/ct/image"]
                for edge in (64, 96, 128):
                    if edge > min(image.shape):
                        continue
                    n, spent = timed_reads(image, edge, args.seconds, rng)
                    mbps = n * edge ** 3 * image.dtype.itemsize / spent / 1e6
                    print(f"h5py patch_read {layout} edge={edge} cache={cache_mib or 1}MiB "
                          f"patches_per_s={n / spent:.1f} MBps={mbps:.1f}")
                if cache_mib == 0:
                    n, spent = 0, 0.0
                    while spent < args.seconds:
                        t0 = time.perf_counter()
                        whole = image[...]
                        spent += time.perf_counter() - t0
                        n += 1
                    print(f"h5py whole_volume {layout} MBps={n * whole.nbytes / spent / 1e6:.1f}")


if __name__ == "__main__":
    main()
