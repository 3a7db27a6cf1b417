"""Cut an InceptionV3 weights file after one layer, for carrying to a device machine (issue 21).

    python benchmarks/cut_weights.py ../shared/models/inception_v3_notop_q8.weights.h5 .wts/inception_v3_to_mixed5.weights.h5

Every dataset of a layer after ``--after`` (default mixed5) is written as zeros, gzip-compressed: the file still loads
into ``keras.applications.InceptionV3(include_top=False)`` and dreams on mixed0–mixed5 exactly as the full file does
(47 MB -> 8.8 MB), while deeper layers are dead. For tests and benchmarks only.
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--after", default="mixed5")
    args = ap.parse_args()
    import keras

    names = [layer.name for layer in keras.applications.InceptionV3(include_top=False, weights=None).layers]
    late = set(names[names.index(args.after) + 1:])
    counts = [0, 0]

    def copy(src, dst, path):
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for key, item in src.items():
            p = f"{path}/{key}"
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key), p)
                continue
            data = item[()]
            dead = any(part in late for part in p.split("/"))
            counts[dead] += 1
            d = dst.create_dataset(key, data=np.zeros_like(data) if dead else data,
                                   compression="gzip" if item.compression else None)
            for k, v in item.attrs.items():
                d.attrs[k] = v

    with h5py.File(args.src, "r") as src, h5py.File(args.dst, "w") as dst:
        copy(src, dst, "")
    keras.applications.InceptionV3(include_top=False, weights=None).load_weights(args.dst)  # still loads
    print(f"{args.dst}: {counts[0]} datasets kept, {counts[1]} zeroed (layers after {args.after})")


if __name__ == "__main__":
    main()
