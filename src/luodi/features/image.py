"""The image feature: file paths or encoded bytes in, one uint8 array (rows, channels, height, width) out.

Images are decoded once, in parallel threads (Pillow releases the GIL while it decodes and resizes), into the
uint8 array that is the dataset for every epoch: normalization and augmentation happen on batch tensors in the
model (models/vision.py), so training, evaluation and prediction share this code path and the cached array
stays a quarter of the float32 size. A decoded column is also kept on disk (`LUODI_CACHE`, default
~/.cache/luodi/images), keyed by each file's path, size and modification time (or the bytes' hash), the size and
the channels, so a second run over the same folder does not decode again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.config import ImageFeature
from luodi.data.images import GRAY_MODES, MAX_INFERRED_SIDE, BadImage, first_line, image_name, open_image, probe
from luodi.errors import InputError

CACHE_VERSION = 1  # part of every cache key: bump when decoding changes
CACHE_MAX_MB_DEFAULT = 2048  # the disk cache's size limit unless $LUODI_CACHE_MAX_MB says otherwise
CHUNK = 64  # images per task handed to a decoding thread
# Columns of file paths at least this long go to the disk cache: a handful of rows to predict (or bytes sent to a
# server) decode faster than a cache file is written.
CACHE_MIN_ROWS = 256


def decode(item: str | bytes, row: int, height: int, width: int, channels: int, strict: bool) -> np.ndarray:
    """One image as uint8 (channels, height, width): converted to gray or RGB, resized when its size differs."""
    from PIL import Image

    with open_image(item, row) as image:
        gray = image.mode in GRAY_MODES
        if strict and gray != (channels == 1):
            found, wanted = ("gray", "color") if gray else ("color", "gray")
            raise BadImage(f"{image_name(item, row)}: a {found} image among {wanted} ones (channels: {channels}); "
                           "convert it, or set strict_channels: false to convert it when read")
        try:
            image = image.convert("L" if channels == 1 else "RGB")  # decodes; a truncated file fails here
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
        except (OSError, ValueError, SyntaxError) as error:
            raise BadImage(f"{image_name(item, row)}: cannot decode ({first_line(error)})") from None
        pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)  # (channels, height, width)


def coerce_images(column: pa.ChunkedArray, feature: ImageFeature, source: str) -> pa.ChunkedArray:
    """Paths made absolute against the folder of the table file (or the image folder itself; the working folder
    for records); byte columns pass through. Missing cells are an error naming the row unless skipped."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return column
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"{source}: column {feature.name!r} is an image column but holds {column.type} values; "
                         "give file paths or encoded image bytes")
    if feature.on_bad_image == "error" and column.null_count:
        row = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{source}: column {feature.name!r} row {row + 1} has no image path")
    place = Path(source)
    base = place if place.is_dir() else place.parent if place.is_file() else Path.cwd()
    paths = [None if value is None else os.path.join(base, value) for value in column.to_pylist()]
    return pa.chunked_array([pa.array(paths, pa.string())])


def _items(column: pa.ChunkedArray) -> list[str | bytes | None]:
    return column.to_pylist()


def cache_folder() -> Path:
    root = os.environ.get("LUODI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "luodi")
    return Path(root) / "images"


def column_key(items: list[str | bytes | None], shape: tuple[int, int, int], strict: bool) -> str:
    """A digest of what decoding depends on: each file's path, size and mtime (or the bytes), the output shape."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {shape} {strict}".encode())
    for item in items:
        if isinstance(item, bytes):
            digest.update(b"b" + hashlib.sha256(item).digest())
        elif item is None:
            digest.update(b"n")
        else:
            try:
                stat = os.stat(item)
                digest.update(f"p{item}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            except OSError:
                digest.update(f"p{item}\0missing\0".encode())
    return digest.hexdigest()


def _chunks(count: int) -> Iterator[range]:
    for start in range(0, count, CHUNK):
        yield range(start, min(count, start + CHUNK))


def decode_all(items: list[str | bytes | None], shape: tuple[int, int, int], strict: bool,
               threads: int) -> tuple[np.ndarray, dict[int, str]]:
    """Every image into one uint8 array (rows, channels, height, width); failures by row, with their message."""
    channels, height, width = shape
    out = np.zeros((len(items), channels, height, width), dtype=np.uint8)
    failures: dict[int, str] = {}

    def work(rows: range) -> None:
        for row in rows:
            item = items[row]
            if item is None:
                failures[row] = f"row {row + 1}: no image"
                continue
            try:
                out[row] = decode(item, row, height, width, channels, strict)
            except BadImage as error:
                failures[row] = str(error)

    if threads > 1 and len(items) > CHUNK:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, _chunks(len(items))))
    else:
        for rows in _chunks(len(items)):
            work(rows)
    return out, dict(sorted(failures.items()))


def _threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


class ImageEncoder:
    """Fitted state: the size and channels every image is converted to, and per-channel mean and std of the
    training pixels (on the 0-1 scale) that the model's input layer normalizes with."""

    kind = "tensor"
    modality = "image"

    def __init__(self, config: ImageFeature, height: int = 0, width: int = 0, channels: int = 0,
                 mean: list[float] | None = None, std: list[float] | None = None):
        self.name, self.config = config.name, config
        self.height, self.width, self.channels = height, width, channels
        self.mean: list[float] = mean or [0.0] * channels
        self.std: list[float] = std or [1.0] * channels
        self._fitted: tuple[str, np.ndarray, dict[int, str]] | None = None  # the training column, decoded by fit

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def fit(self, column: pa.ChunkedArray) -> None:
        items = _items(column)
        headers = []
        for row, item in enumerate(items):
            if item is None:
                continue
            try:
                headers.append(probe(item, row))
            except BadImage as error:
                if self.config.on_bad_image == "error":
                    raise InputError(str(error)) from None
        if not headers:
            raise InputError(f"column {self.name!r}: no readable image in the training split")
        self.channels = self.config.channels or (1 if all(gray for _, _, gray in headers) else 3)
        if self.config.height and self.config.width:
            self.height, self.width = self.config.height, self.config.width
        else:
            (width, height), _ = Counter((w, h) for w, h, _ in headers).most_common(1)[0]
            scale = min(1.0, MAX_INFERRED_SIDE / max(width, height))
            self.width = self.config.width or max(1, round(width * scale))
            self.height = self.config.height or max(1, round(height * scale))
        pixels, failures = self._decode(items)
        keep = np.ones(len(items), dtype=bool)
        keep[list(failures)] = False
        if not keep.any():
            raise InputError(f"column {self.name!r}: no readable image in the training split")
        self.mean, self.std = channel_statistics(pixels[keep])
        self._fitted = (column_key(items, self.shape, self.config.strict_channels), pixels, failures)

    def _decode(self, items: list[str | bytes | None]) -> tuple[np.ndarray, dict[int, str]]:
        """Decoded images and failures; from the fit just done or the disk cache when nothing changed."""
        key = column_key(items, self.shape, self.config.strict_channels)
        if self._fitted is not None and self._fitted[0] == key:
            _, pixels, failures = self._fitted
            self._fitted = None  # handed over once: the pipeline holds the array from here on
            return pixels, failures
        cacheable = len(items) >= CACHE_MIN_ROWS and all(isinstance(item, str) for item in items)
        cached = load_cached(key) if cacheable else None
        if cached is not None:
            return cached
        pixels, failures = decode_all(items, self.shape, self.config.strict_channels, _threads())
        if cacheable and not failures:
            save_cached(key, pixels)
        if failures and self.config.on_bad_image == "error":
            first = next(iter(failures.values()))
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise InputError(f"column {self.name!r}: {first}{more}")
        return pixels, failures

    def transform(self, column: pa.ChunkedArray, unseen: Any) -> dict[str, np.ndarray]:
        pixels, failures = self._decode(_items(column))
        if failures:
            unseen.skip(self.name, list(failures), list(failures.values()))
        return {self.name: pixels}  # (rows, channels, height, width) uint8

    def state(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "channels": self.channels, "mean": self.mean,
                "std": self.std}

    def schema(self) -> dict[str, Any]:
        return {"dtype": "string (image file path)|bytes (encoded image)", "height": self.height,
                "width": self.width, "channels": self.channels}


def channel_statistics(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images on the 0-1 scale, exactly, from 256-bin histograms (no float copy
    of the array)."""
    means, stds = [], []
    levels = np.arange(256, dtype=np.float64) / 255.0
    for channel in range(pixels.shape[1]):
        counts = np.bincount(pixels[:, channel].reshape(-1), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        std = float(np.sqrt(max((counts * (levels - mean) ** 2).sum() / total, 0.0)))
        means.append(mean)
        stds.append(std if std > 1e-6 else 1.0)
    return means, stds


def cache_limit_bytes() -> int:
    """How large the disk cache may grow: $LUODI_CACHE_MAX_MB, default 2 GiB (0 keeps only the newest entry)."""
    value = os.environ.get("LUODI_CACHE_MAX_MB")
    if value is None or not value.strip():
        return CACHE_MAX_MB_DEFAULT << 20
    try:
        megabytes = int(value)
    except ValueError:
        megabytes = -1
    if megabytes < 0:
        raise InputError(f"LUODI_CACHE_MAX_MB={value!r}: expected a whole number of megabytes (0 or more)")
    return megabytes << 20


def load_cached(key: str) -> tuple[np.ndarray, dict[int, str]] | None:
    path = cache_folder() / f"{key}.npy"
    try:
        pixels = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # a use: pruning removes the least recently used entries first
    return pixels, {}


def save_cached(key: str, pixels: np.ndarray) -> None:
    """Best effort: a cache that cannot be written (read-only home, full disk) only costs the next run a decode.
    Then the cache is pruned to its size limit, least recently used entries first."""
    from luodi.io import atomic_write

    limit = cache_limit_bytes()
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{key}.npy", lambda handle: np.save(handle, pixels, allow_pickle=False))
    except OSError:
        return
    prune_cache(folder, keep=folder / f"{key}.npy", limit=limit)


def prune_cache(folder: Path, keep: Path, limit: int) -> None:
    """Delete the least recently used (oldest modification time) entries until the folder holds at most `limit`
    bytes; `keep`, the entry just written, stays. Entries another process removes meanwhile are skipped."""
    entries = []
    for path in folder.glob("*.npy"):
        with contextlib.suppress(OSError):
            status = path.stat()
            entries.append((status.st_mtime, status.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path == keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size
