"""Check an HTML report in a real headless browser: it loads, every figure renders, no link is broken.

    python -m reports.browser_check reports/out/report.html [--screenshot shot.png]

Two halves, each doing what it can see best:
- Chromium (headless, from the OS packages: `apt-get install chromium`) loads a copy of the report with a probe
  script appended; after the load event the probe records every <img>'s natural size and every <svg>'s rendered
  box, and every in-page `#anchor` without a target, and `--dump-dom` hands that back.
- Python parses the file itself: every href/src must resolve (an anchor with a target, a decodable data: image, an
  existing relative file). http(s) links are checked for form only; the check runs offline.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlparse

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE_ID = "__report_check__"
PROBE = """<script>
window.addEventListener('load', () => {
  const out = {title: document.title, figures: [], broken_anchors: []};
  for (const img of document.images) {
    out.figures.push({kind: 'img', where: (img.closest('figure') || {}).id || img.alt || '',
                      complete: img.complete, width: img.naturalWidth, height: img.naturalHeight});
  }
  for (const svg of document.querySelectorAll('svg')) {
    const box = svg.getBoundingClientRect();
    out.figures.push({kind: 'svg', where: (svg.closest('figure') || {}).id || svg.id || '',
                      complete: true, width: box.width, height: box.height});
  }
  for (const a of document.querySelectorAll('a[href^="#"]')) {
    const target = decodeURIComponent(a.getAttribute('href').slice(1));
    if (target && !document.getElementById(target)) out.broken_anchors.push(a.getAttribute('href'));
  }
  const pre = document.createElement('pre');
  pre.id = '__PROBE_ID__';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>""".replace("__PROBE_ID__", PROBE_ID)


@dataclass
class CheckResult:
    title: str = ""
    figures: list[dict] = field(default_factory=list)  # as the browser saw them
    problems: list[str] = field(default_factory=list)
    external_links: list[str] = field(default_factory=list)  # well-formed, not fetched (offline)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_chromium() -> Optional[str]:
    """$CHROMIUM, else the first Chromium/Chrome on PATH; None when there is none."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def chromium_args(binary: str) -> list[str]:
    args = [binary, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--allow-file-access-from-files", "--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox (CI containers run as root)
    return args


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        for key in ("id", "name" if tag == "a" else ""):
            if key and a.get(key):
                self.ids.add(a[key])
        if tag == "img":
            self.images += 1
        for attr in ("href", "src"):
            if a.get(attr) is not None:
                self.refs.append((tag, attr, a[attr] or ""))


def _check_data_uri(uri: str) -> Optional[str]:
    m = re.match(r"data:([^;,]*)(;base64)?,(.*)", uri, re.S)
    if not m:
        return "malformed data: URI"
    mime, is_b64, payload = m.groups()
    try:
        raw = base64.b64decode(payload, validate=True) if is_b64 else unquote(payload).encode()
    except (binascii.Error, ValueError):
        return f"data: URI ({mime}) is not valid base64"
    if mime == "image/png" and not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "data: URI claims image/png but holds no PNG"
    if not raw:
        return f"empty data: URI ({mime})"
    return None


def check_links(html_path: Path) -> tuple[list[str], list[str], int]:
    """(problems, external links, number of <img>) from the HTML source itself."""
    parser = _LinkCollector()
    parser.feed(html_path.read_text(encoding="utf-8"))
    problems, external = [], []
    for tag, attr, value in parser.refs:
        where = f"<{tag} {attr}={value[:60]!r}>"
        if not value.strip():
            problems.append(f"{where}: empty link")
        elif value.startswith("#"):
            if unquote(value[1:]) not in parser.ids:
                problems.append(f"{where}: no element with id {value[1:]!r}")
        elif value.startswith("data:"):
            issue = _check_data_uri(value)
            if issue:
                problems.append(f"{where}: {issue}")
        else:
            url = urlparse(value)
            if url.scheme in ("http", "https"):
                (external if url.netloc else problems).append(value if url.netloc else f"{where}: no host")
            elif url.scheme == "mailto":
                external.append(value)
            elif url.scheme in ("", "file"):
                target = Path(unquote(url.path)) if url.scheme == "file" else html_path.parent / unquote(url.path)
                if not target.exists():
                    problems.append(f"{where}: {target} does not exist")
            else:
                problems.append(f"{where}: unexpected scheme {url.scheme!r}")
    return problems, external, parser.images


def probe_in_browser(html_path: Path, binary: str, timeout: float = 60) -> dict:
    """Load a probe copy of the report (same folder, so relative links resolve) and return what the probe saw."""
    html = html_path.read_text(encoding="utf-8")
    probed = html.replace("</body>", PROBE + "\n</body>") if "</body>" in html else html + PROBE
    fd, name = tempfile.mkstemp(prefix=f".{html_path.stem}.", suffix=".probe.html", dir=html_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(probed)
        proc = subprocess.run([*chromium_args(binary), "--virtual-time-budget=10000", "--dump-dom",
                               Path(name).resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(name)
    m = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', proc.stdout, re.S)
    if not m:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the page did not finish loading in Chromium (exit {proc.returncode}): {tail}")
    from html import unescape

    return json.loads(unescape(m.group(1)))


def screenshot(html_path: Path, out_png: Path, binary: str, width: int = 1400, height: int = 4000) -> Path:
    subprocess.run([*chromium_args(binary), f"--window-size={width},{height}", f"--screenshot={out_png.resolve()}",
                    html_path.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return out_png


def check_report(html_path: str | Path, binary: Optional[str] = None) -> CheckResult:
    path = Path(html_path)
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
    problems, external, n_images = check_links(path)
    seen = probe_in_browser(path, binary)
    result = CheckResult(title=seen["title"], figures=seen["figures"], problems=problems, external_links=external)
    for a in seen["broken_anchors"]:
        result.problems.append(f"browser: anchor {a} has no target")
    imgs = [f for f in seen["figures"] if f["kind"] == "img"]
    if len(imgs) != n_images:
        result.problems.append(f"browser saw {len(imgs)} <img> but the file has {n_images}")
    for fig in seen["figures"]:
        if not fig["complete"] or fig["width"] <= 0 or fig["height"] <= 0:
            result.problems.append(f"figure {fig['where']!r} ({fig['kind']}) did not render: "
                                   f"{fig['width']}x{fig['height']}, complete={fig['complete']}")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.browser_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path, help="also save a full-page PNG screenshot here")
    args = parser.parse_args(argv)
    binary = find_chromium()
    if binary is None:
        print("error: no Chromium found; install it (Debian/Ubuntu: apt-get install -y chromium) or set $CHROMIUM",
              file=sys.stderr)
        return 2
    result = check_report(args.report, binary)
    print(f"{args.report}: title {result.title!r}, {len(result.figures)} figure(s) rendered, "
          f"{len(result.external_links)} external link(s) well-formed (not fetched)")
    for p in result.problems:
        print(f"  problem: {p}")
    if args.screenshot:
        print(f"screenshot: {screenshot(args.report, args.screenshot, binary)}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(main))
