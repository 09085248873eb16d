"""Image files: image folders as tables, opening an image and reading its header, and what `luodi init` needs to
know about image columns. Decoding pixels for the model is the image feature's (features/image.py).

A folder with one subfolder per class (`photos/cat/1.png`, `photos/dog/7.jpg`) reads as a table with an `image`
column of paths relative to the folder and a `label` column of class names, so an image folder goes through the
same split, feature, training and package code as any table.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from luodi.data.folders import files_under, fingerprint_files
from luodi.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IMAGE_COLUMN, LABEL_COLUMN = "image", "label"
MAX_INFERRED_SIDE = 64  # an inferred size keeps the aspect ratio but at most this many pixels a side
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class BadImage(Exception):
    """One image that cannot be used; the message names the file (or the row, for bytes)."""


def image_name(item: str | bytes, row: int) -> str:
    """How messages name an image: its path, or its row for bytes."""
    return item if isinstance(item, str) else f"row {row + 1} (image bytes)"


def open_image(item: str | bytes, row: int) -> Any:
    """A Pillow image (header read, pixels not decoded yet); BadImage names the file when it cannot be opened."""
    from PIL import Image

    try:
        return Image.open(item if isinstance(item, str) else io.BytesIO(item))
    except FileNotFoundError:
        raise BadImage(f"{image_name(item, row)}: file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"{image_name(item, row)}: not a readable image ({first_line(error)})") from None


def first_line(error: BaseException) -> str:
    """The first line of an error's message (Pillow's can run to several)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def probe(item: str | bytes, row: int) -> tuple[int, int, bool]:
    """(width, height, is_gray) from the header alone, without decoding the pixels."""
    with open_image(item, row) as image:
        return image.size[0], image.size[1], image.mode in GRAY_MODES


def is_image_path(value: str) -> bool:
    return os.path.splitext(value)[1].lower() in IMAGE_SUFFIXES


def read_image_folder(folder: Path) -> pa.Table:
    """`image` (path relative to `folder`) and `label` (the class folder's name), one row per image file."""
    classes = sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        loose = [entry.name for entry in folder.iterdir() if entry.is_file() and is_image_path(entry.name)]
        hint = f" (it holds {len(loose)} images directly: move them into one folder per class)" if loose else ""
        raise InputError(f"{folder}: an image folder needs one subfolder per class, e.g. {folder}/cat/1.png{hint}")
    paths, labels = [], []
    for class_folder in classes:
        images = files_under(class_folder, IMAGE_SUFFIXES)
        if not images:
            raise InputError(f"{class_folder}: class folder {class_folder.name!r} holds no images "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder")
        paths += [path.relative_to(folder).as_posix() for path in images]
        labels += [class_folder.name] * len(images)
    return pa.table({IMAGE_COLUMN: pa.array(paths, pa.string()), LABEL_COLUMN: pa.array(labels, pa.string())})


def fingerprint_folder(folder: Path) -> dict[str, Any]:
    """Identity of an image folder: the sha256 over every image's relative path and content, and the total size."""
    return fingerprint_files(folder, files_under(folder, IMAGE_SUFFIXES))


def describe_images(paths: list[str], base: Path, sample: int = 200) -> dict[str, Any]:
    """Size and channels of a sample of images (headers only), for the starter config: the most common size,
    scaled to at most 64 px a side, and 3 channels if any sampled image has color."""
    step = max(1, len(paths) // sample)
    headers = []
    for row in range(0, len(paths), step):
        try:
            headers.append(probe(str(base / paths[row]), row))
        except BadImage:
            continue
    if not headers:
        raise InputError(f"{base}: none of the {len(paths)} image paths sampled could be read (e.g. {paths[0]!r})")
    (width, height), _ = Counter((w, h) for w, h, _ in headers).most_common(1)[0]
    scale = min(1.0, MAX_INFERRED_SIDE / max(width, height))
    return {"height": max(1, round(height * scale)), "width": max(1, round(width * scale)),
            "channels": 1 if all(gray for _, _, gray in headers) else 3, "found": (width, height)}
