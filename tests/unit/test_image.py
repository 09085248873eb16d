"""The image feature: decoding, sizes and channels, statistics, bad files, the disk cache, image folders, and the
model-side augmentation. Tiny PNGs are written with Pillow into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from luodi.config import AugmentConfig, ImageFeature, ModelConfig
from luodi.data.images import fingerprint_folder, read_image_folder
from luodi.errors import InputError
from luodi.features import image as image_module
from luodi.features.encoders import build_encoder
from luodi.features.image import ImageEncoder, coerce_images
from luodi.features.unseen import Unseen
from luodi.models import FEATURE_ENCODERS
from luodi.models.vision import augment


def png(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def column(values: list) -> pa.ChunkedArray:  # type: ignore[type-arg]
    return pa.chunked_array([pa.array(values)])


def gray(value: int, size: tuple[int, int] = (6, 4)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8)  # (height, width)


def encoder_for(paths: list[str], **config: object) -> ImageEncoder:
    encoder = ImageEncoder(ImageFeature(name="image", **config))  # type: ignore[arg-type]
    encoder.fit(column(paths))
    return encoder


def test_size_channels_and_statistics_come_from_the_training_images(tmp_path: Path) -> None:
    paths = [png(tmp_path / f"{i}.png", gray(value)) for i, value in enumerate([0, 51, 255])]
    paths.append(png(tmp_path / "odd.png", gray(102, (3, 3))))  # another size: resized to the common one
    encoder = encoder_for(paths)
    assert (encoder.channels, encoder.height, encoder.width) == (1, 6, 4)
    pixels = encoder.transform(column(paths), Unseen())["image"]
    assert pixels.shape == (4, 1, 6, 4) and pixels.dtype == np.uint8
    assert (pixels[3] == 102).all()
    values = pixels.astype(np.float64) / 255
    assert encoder.mean == pytest.approx([values.mean()]) and encoder.std == pytest.approx([values.std()])


def test_color_among_gray_makes_three_channels_and_gray_is_converted(tmp_path: Path) -> None:
    color = np.zeros((6, 4, 3), dtype=np.uint8)
    color[..., 0] = 200
    paths = [png(tmp_path / "gray.png", gray(80)), png(tmp_path / "color.png", color)]
    encoder = encoder_for(paths)
    assert encoder.channels == 3
    pixels = encoder.transform(column(paths), Unseen())["image"]
    assert (pixels[0] == 80).all()  # the gray image, repeated over R, G and B
    assert pixels[1, 0].max() == 200 and pixels[1, 1:].max() == 0


def test_strict_channels_names_the_gray_file(tmp_path: Path) -> None:
    paths = [png(tmp_path / "color.png", np.zeros((6, 4, 3), dtype=np.uint8)), png(tmp_path / "gray.png", gray(1))]
    with pytest.raises(InputError, match=r"gray\.png: a gray image among color ones"):
        encoder_for(paths, strict_channels=True)


def test_configured_size_and_inferred_size_capped(tmp_path: Path) -> None:
    path = png(tmp_path / "big.png", np.zeros((200, 100), dtype=np.uint8))
    assert (encoder_for([path]).height, encoder_for([path]).width) == (64, 32)  # the aspect ratio kept
    fixed = encoder_for([path], height=10, width=12, channels=3)
    assert fixed.transform(column([path]), Unseen())["image"].shape == (1, 3, 10, 12)


@pytest.mark.parametrize(("content", "message"), [
    (b"not an image at all", "not a readable image"),
    (None, "cannot decode"),  # a PNG cut in half
])
def test_bad_files_are_errors_naming_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    good = png(tmp_path / "good.png", (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64))
    bad = tmp_path / "bad.png"
    bad.write_bytes(content if content is not None else Path(good).read_bytes()[:200])
    with pytest.raises(InputError, match=rf"{bad}: {message}"):
        encoder_for([good, str(bad)])
    with pytest.raises(InputError, match=r"missing\.png: file not found"):
        encoder_for([good, str(tmp_path / "missing.png")])


def test_skip_reports_the_rows_it_leaves_out(tmp_path: Path) -> None:
    good = png(tmp_path / "good.png", gray(9))
    (tmp_path / "bad.png").write_bytes(b"junk")
    encoder = encoder_for([good, good], on_bad_image="skip")
    unseen = Unseen()
    encoder.transform(column([good, str(tmp_path / "bad.png"), good]), unseen)
    assert unseen.skipped == {"image": [1]}
    assert "bad.png" in unseen.messages()[0] and "skipped 1 row(s)" in unseen.messages()[0]


def test_bytes_decode_like_paths(tmp_path: Path) -> None:
    paths = [png(tmp_path / f"{i}.png", gray(i * 40)) for i in range(3)]
    encoder = encoder_for(paths)
    from_bytes = encoder.transform(column([Path(p).read_bytes() for p in paths]), Unseen())["image"]
    assert np.array_equal(from_bytes, encoder.transform(column(paths), Unseen())["image"])


def test_paths_resolve_against_the_table_file_folder(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("image\n")
    feature = ImageFeature(name="image")
    resolved = coerce_images(column(["a/1.png"]), feature, str(tmp_path / "table.csv"))
    assert resolved.to_pylist() == [str(tmp_path / "a" / "1.png")]
    with pytest.raises(InputError, match="row 2 has no image path"):
        coerce_images(column(["a.png", None]), feature, str(tmp_path / "table.csv"))


def test_a_second_run_reads_decoded_images_from_the_disk_cache(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUODI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image_module, "CACHE_MIN_ROWS", 1)
    paths = [png(tmp_path / f"{i}.png", gray(i)) for i in range(3)]
    first = encoder_for(paths)
    first.transform(column(paths), Unseen())  # the fit's decode is handed over; nothing cached without a miss
    restored = build_encoder(first.config, first.state())
    expected = restored.transform(column(paths), Unseen())["image"]  # a miss: decoded, then cached
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == 1

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_module, "decode_all", no_decoding)
    again = build_encoder(first.config, first.state())
    assert np.array_equal(again.transform(column(paths), Unseen())["image"], expected)
    Path(paths[0]).touch()  # a newer file is a new key
    import os

    os.utime(paths[0], ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        again.transform(column(paths), Unseen())


def test_the_disk_cache_keeps_to_its_size_limit_dropping_the_least_recently_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three cached columns of 16 KiB in a 40 KiB cache: the third save removes the entry used longest ago; an
    entry that was read counts as used."""
    import os

    monkeypatch.setenv("LUODI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image_module, "cache_limit_bytes", lambda: 40 << 10)
    pixels = np.zeros((16, 1, 32, 32), dtype=np.uint8)  # 16 KiB, plus the .npy header
    folder = tmp_path / "cache" / "images"
    image_module.save_cached("a", pixels)
    image_module.save_cached("b", pixels)
    os.utime(folder / "a.npy", (1, 1))  # a and b look old ...
    os.utime(folder / "b.npy", (2, 2))
    assert image_module.load_cached("a") is not None  # ... then a is read: now it is the recent one
    image_module.save_cached("c", pixels)
    assert sorted(path.name for path in folder.glob("*.npy")) == ["a.npy", "c.npy"]


@pytest.mark.parametrize(("value", "expected"), [("", 2048 << 20), ("0", 0), ("512", 512 << 20)])
def test_cache_limit_from_the_environment(value: str, expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUODI_CACHE_MAX_MB", value)
    assert image_module.cache_limit_bytes() == expected


@pytest.mark.parametrize("value", ["lots", "-1", "1.5"])
def test_a_bad_cache_limit_is_an_input_error_naming_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUODI_CACHE_MAX_MB", value)
    with pytest.raises(InputError, match="LUODI_CACHE_MAX_MB"):
        image_module.cache_limit_bytes()


def test_image_folder_reads_as_paths_and_labels(tmp_path: Path) -> None:
    png(tmp_path / "photos" / "cat" / "1.png", gray(1))
    png(tmp_path / "photos" / "dog" / "sub" / "2.png", gray(2))
    (tmp_path / "photos" / "dog" / "notes.txt").write_text("ignored")
    table = read_image_folder(tmp_path / "photos")
    assert table.to_pydict() == {"image": ["cat/1.png", "dog/sub/2.png"], "label": ["cat", "dog"]}
    before = fingerprint_folder(tmp_path / "photos")["sha256"]
    png(tmp_path / "photos" / "cat" / "1.png", gray(3))
    assert fingerprint_folder(tmp_path / "photos")["sha256"] != before


def test_image_folder_errors_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "photos" / "empty").mkdir(parents=True)
    png(tmp_path / "photos" / "cat" / "1.png", gray(1))
    with pytest.raises(InputError, match=r"photos/empty: class folder 'empty' holds no images"):
        read_image_folder(tmp_path / "photos")
    png(tmp_path / "flat" / "1.png", gray(1))
    with pytest.raises(InputError, match="one subfolder per class.*holds 1 images directly"):
        read_image_folder(tmp_path / "flat")


def test_crop_padding_shifts_by_whole_pixels_with_zero_fill() -> None:
    torch.manual_seed(0)
    images = torch.rand(16, 2, 5, 7)
    shifted = augment(images, AugmentConfig(crop_padding=2))
    torch.manual_seed(0)  # replay the draws: the images, the (zero) angles, then the shifts
    torch.rand(16, 2, 5, 7), torch.rand(16)
    shift_x, shift_y = torch.randint(-2, 3, (16,)), torch.randint(-2, 3, (16,))
    for row in range(16):
        dx, dy = int(shift_x[row]), int(shift_y[row])
        expected = torch.zeros(2, 5 + 4, 7 + 4)
        expected[:, 2:7, 2:9] = images[row]
        window = expected[:, 2 + dy:7 + dy, 2 + dx:9 + dx]
        assert torch.allclose(shifted[row], window, atol=1e-5), (row, dx, dy)


def test_flip_mirrors_and_rotation_keeps_the_centre() -> None:
    images = torch.rand(64, 1, 6, 6)
    flipped = augment(images, AugmentConfig(horizontal_flip=True))
    mirrored = [torch.allclose(out, image.flip(-1), atol=1e-5) for out, image in zip(flipped, images, strict=True)]
    kept = [torch.allclose(out, image, atol=1e-5) for out, image in zip(flipped, images, strict=True)]
    assert all(a or b for a, b in zip(mirrored, kept, strict=True)) and 10 < sum(mirrored) < 54
    disc = torch.zeros(1, 1, 9, 9)
    disc[..., 3:6, 3:6] = 1.0
    rotated = augment(disc.repeat(8, 1, 1, 1), AugmentConfig(rotation=20))
    assert (rotated[:, :, 4, 4] > 0.99).all()


@pytest.mark.parametrize("architecture", ["cnn", "resnet"])
def test_image_models_normalize_and_augment_only_in_training(tmp_path: Path, architecture: str) -> None:
    paths = [png(tmp_path / f"{i}.png", (np.arange(48) * i % 255).astype(np.uint8).reshape(8, 6)) for i in range(4)]
    encoder = encoder_for(paths, augment={"crop_padding": 1})
    config = ModelConfig(type=architecture, cnn={"channels": [4, 8]}, resnet={"widths": [4, 8],  # type: ignore[arg-type]
                                                                              "blocks_per_stage": 1})
    module = FEATURE_ENCODERS[architecture]["image"](config, encoder)
    batch = {"image": torch.from_numpy(encoder.transform(column(paths), Unseen())["image"])}
    module.eval()
    out = module(batch)
    assert out.shape == (4, module.output_size)
    assert torch.equal(out, module(batch))  # evaluation is deterministic: no augmentation
    module.train()
    assert not torch.allclose(module(batch), module(batch))
    prepared = module.prepare(batch["image"])
    assert prepared.is_contiguous(memory_format=torch.channels_last)


def test_init_detects_image_paths_bytes_and_number_vectors() -> None:
    from luodi.data.infer import infer_column

    def guess(values: list) -> str | None:  # type: ignore[type-arg]
        return infer_column(column(values), "x").type

    assert guess(["a/1.png", "b/2.JPG", "c/3.jpeg"] * 10) == "image"
    assert guess([b"\x89PNG...", b"\xff\xd8..."] * 10) == "image"
    assert guess(["0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8", "[1, 2, 3, 4, 5, 6, 7, 8, 9]"] * 10) == "sequence"
    assert guess([[0.5, 1.5, 2.5]] * 30) == "sequence"
    assert guess(["1 2 3", "4 5 6"] * 10) != "sequence"  # a few numbers are not a signal
