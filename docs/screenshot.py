"""Save a full-page PNG of an HTML page (e.g. a feedback page dlgrade wrote), rendered by headless Chromium.

Usage (from the repository root, with the dev extra installed):

    .venv/bin/python docs/screenshot.py PAGE.html OUT.png [--width 1400]

    e.g. .venv/bin/python docs/screenshot.py dlgrade_out/feedback/ada.html docs/feedback.png

Needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver; .ci/run installs them) and
selenium (`pip install -e '.[dev]'`). Nothing is downloaded, and the page reaches no network: see tests/browser.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for tests.browser

from tests.browser import WIDTH, screenshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Full-page PNG of an HTML page, by headless Chromium.")
    parser.add_argument("page", type=Path, help="the HTML file")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"window width in pixels (default {WIDTH})")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.error(f"no such file: {args.page}")
    out = screenshot(args.page, args.out, width=args.width)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
