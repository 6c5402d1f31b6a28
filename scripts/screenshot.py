"""Open a report page in headless Chromium: take a screenshot and say what loaded.

    python scripts/screenshot.py outputs/report/index.html --png docs/report.png

Prints one JSON line: the number of images, how many failed to load (no pixels), and the number of tables and
table rows the browser rendered. Needs Chromium (Debian: `apt-get install chromium`); exits 2 with one line
where it is absent.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page: after every image has loaded or failed, the browser writes what it rendered
# into the title, which --dump-dom prints.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images], rows = document.querySelectorAll('table tr');
  document.title = 'PROBE' + JSON.stringify({images: imgs.length,
    broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).length,
    tables: document.querySelectorAll('table').length, rows: rows.length});
});</script>"""


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def inspect_page(page: Path, png: Path | None = None, width: int = 1400, height: int = 2400) -> dict:
    """What headless Chromium rendered of `page` (and a screenshot of its top at `png`)."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("Chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        probe = Path(profile) / "probe.html"
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        common = [browser, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
        dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
        found = re.search(r"<title>PROBE(.*?)</title>", dom.stdout)
        if not found:
            raise RuntimeError(f"Chromium rendered no page ({dom.stderr.strip().splitlines()[-1:]})")
        if png is not None:
            png.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*common, f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
                            page.resolve().as_uri()], capture_output=True, timeout=180, check=True)
    return json.loads(found.group(1).replace("&quot;", '"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    try:
        print(json.dumps(inspect_page(args.page, args.png)))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
