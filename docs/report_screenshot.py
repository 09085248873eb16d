"""Make docs/report.png: the report of a quickstart-like breast-cancer run, as headless Chromium shows it.

    .venv/bin/python docs/report_screenshot.py docs/report.png      (or: make docs/report.png)

The run goes through the same API as `luodi quickstart` (init, then train with the config init writes) in a
temporary folder and store; only the top of the page is captured (summary, training curves, performance).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import luodi.api as api
from luodi.quickstart import write_breast_cancer

WIDTH, HEIGHT = 1280, 2150


def main(out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (on Debian: make browser)")
    with tempfile.TemporaryDirectory(prefix="luodi-report-") as folder:
        work = Path(folder)
        paths = write_breast_cancer(work)
        api.init(paths["train"], "diagnosis", output=work / "luodi.yaml", name="breast-cancer")
        trained = api.train(work / "luodi.yaml", ["runtime.threads=1"], home=work / "home", progress="silent")
        assert trained.report is not None, trained.warnings
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={work / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
                        f"--screenshot={out.resolve()}", Path(trained.report).as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
