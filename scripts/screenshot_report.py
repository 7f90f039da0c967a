"""Render an offrl-analyze HTML report in headless Chromium and save a PNG screenshot.

Why: the report must look right in a real browser, not just parse. Used to produce
docs/img/report.png (and docs/img/example-run.png, the demo's overfitting figure) for the README.

    python scripts/screenshot_report.py                       # analyse fixtures/demo, shoot docs/img/report.png
    python scripts/screenshot_report.py --html out/index.html --out shot.png --size 1280,2400

Needs Debian's `chromium` (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshot_report: no chromium found; install it with `apt-get install -y chromium`")


def build_demo_report(out_dir: Path) -> Path:
    """Analyse fixtures/demo and write its report (and one figure for the README)."""
    from analyzer.api import analyze
    from analyzer.output.failon import parse_fail_on
    from analyzer.output.html_report import write_report
    from analyzer.output.plots import plot_png

    report = analyze([REPO / "fixtures" / "demo"])
    img = REPO / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    overfit = next((r for r in report.runs if r.verdict == "overfitting"), report.runs[0])
    (img / "example-run.png").write_bytes(plot_png(overfit))
    return write_report(report, out_dir, parse_fail_on("overfitting,underfitting"))


def screenshot(html: Path, out: Path, size: tuple[int, int]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out.resolve()}",
            f"--window-size={size[0]},{size[1]}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.exists():
        sys.exit(f"screenshot_report: chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--html", type=Path, help="existing index.html (default: build one from fixtures/demo)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "report.png")
    parser.add_argument("--size", default="1280,2000", help="window size W,H in pixels")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split(","))
    if args.html is None:
        with tempfile.TemporaryDirectory() as tmp:
            screenshot(build_demo_report(Path(tmp)), args.out, (w, h))
    else:
        screenshot(args.html, args.out, (w, h))


if __name__ == "__main__":
    main()
