"""Write scikit-learn's handwritten digits (1,797 images, 8x8 gray) as PNG files, one folder per class.

    python examples/digits/make_digits.py            # writes examples/digits/digits/0/0007.png ...
    luodi train examples/digits/luodi.yaml

The pixel values (0-16) are scaled to 0-255; the folder name is the label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits(folder: Path) -> int:
    """Write every digit as folder/<label>/<index>.png; returns the number of images."""
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target / f"{index:04d}.png")
    return len(pixels)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("digits"), help="folder to write")
    args = parser.parse_args()
    print(f"wrote {write_digits(args.out)} images to {args.out}")
