#!/usr/bin/python3
"""Damages the first chunk of HDF5 datasets in place, as a bad disk or a broken copy would: flips
the bits of a few bytes in the middle of the chunk's stored bytes, found through HDF5's chunk
index (h5py's get_chunk_info), so the file's structure stays intact and only the chunk is wrong.
Usage: corrupt_chunk.py FILE DATASET_PATH...   e.g. studies/s1/series/ct/image
"""
import sys

import h5py


def main():
    path, objects = sys.argv[1], sys.argv[2:]
    spots = []
    with h5py.File(path, "r") as f:
        for name in objects:
            info = f[name].id.get_chunk_info(0)
            if info.size < 8:
                sys.exit(f"{path}:{name}: the first chunk holds {info.size} bytes; too few to damage")
            spots.append((info.byte_offset + info.size // 3, min(16, info.size // 3)))
    with open(path, "r+b") as raw:
        for offset, count in spots:
            raw.seek(offset)
            data = bytes(b ^ 0xFF for b in raw.read(count))
            raw.seek(offset)
            raw.write(data)


if __name__ == "__main__":
    main()
