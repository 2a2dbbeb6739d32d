#!/usr/bin/env python3
"""Open Snakemake's report.html in headless Chromium and check that every plot shows: present and non-empty.

Snakemake's report is a JavaScript (React) app: the results are data URIs inside the page, and an image is put into
the DOM only when the user opens its category and clicks its view button; the URL carries no view. So this script
loads a copy of the report with one extra <script> (the driver, below) appended, which uses the report's own UI the
way a user does: it clicks each category in the menu, each subcategory, and each image result's view button, and
for every image the app then shows it records the <img> element's decoded size, its rendered size, and the share of
its pixels that differ from the background (drawn to a canvas). Chromium runs it with a virtual time budget and
prints the resulting DOM (`--dump-dom`), from which this script reads the driver's JSON.

    scripts/check_report.py results/toy/report.html --plots results/toy/plots   # every PNG there must show
    scripts/check_report.py REPORT --expect plots/miou.png --expect plots/training.png
    scripts/check_report.py REPORT --screenshot docs/report.png --show plots/examples.png   # the README's picture

Checks fail (exit 1, one line per problem) when an expected plot is not reachable in the report, its element is
missing, has no decoded or rendered size, or is blank (less than `--min-ink` of its pixels differ from its corner
pixel). Chromium: `--chromium`, $CHROMIUM, or the first of chromium, chromium-browser, google-chrome on the PATH
(Debian: `apt-get install -y chromium`). Exit 2 when there is none.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MARKER = "esl-report-check"

DRIVER = r"""
(async function () {
  const config = window.ESL_CHECK || {};
  const out = { shown: [], errors: [], categories: [], stopped: false };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const byName = (a, b) => a.localeCompare(b);
  async function until(pred, what, tries = 400) {
    for (let i = 0; i < tries; i++) {
      const v = pred();
      if (v) return v;
      await sleep(25);
    }
    throw new Error("timed out waiting for " + what);
  }
  const link = (text) => Array.from(document.querySelectorAll("nav a")).find((a) => a.textContent.trim() === text);
  const rows = () => document.querySelectorAll("nav tbody tr");
  function ink(img) {  // share of pixels that differ from the top-left one (the figure's background)
    const scale = Math.min(1, 1200 / Math.max(img.naturalWidth, img.naturalHeight));
    const w = Math.max(1, Math.round(img.naturalWidth * scale));
    const h = Math.max(1, Math.round(img.naturalHeight * scale));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    let differ = 0;
    for (let i = 0; i < d.length; i += 4) {
      let distance = 0;
      for (let k = 0; k < 4; k++) distance += Math.abs(d[i + k] - d[k]);
      if (distance > 24) differ++;
    }
    return differ / (w * h);
  }
  async function showRow(i, category, sub) {
    const row = rows()[i];
    const button = row && row.querySelector("td:last-child a");
    if (!button || button.getAttribute("href") !== "#") return false;  // a download link: not an image
    app.setView({ content: "text", contentText: "-", resultPath: "-" });
    await until(() => app.state.resultPath === "-", "a cleared view");
    button.click();
    const path = await until(
      () => app.state.content === "img" && app.state.resultPath !== "-" && app.state.resultPath, "a shown result");
    const img = await until(() => Array.from(document.querySelectorAll("img")).find(
      (im) => !im.closest("nav") && im.getAttribute("src") === results[path].data_uri), "the img of " + path);
    await until(() => img.complete, "the image " + path + " to load");
    const rect = img.getBoundingClientRect();
    let share = null;
    try {
      share = ink(img);
    } catch (e) {
      out.errors.push("canvas: " + e);
    }
    out.shown.push({
      path: path, category: category, subcategory: sub, mime: results[path].mime_type,
      natural: [img.naturalWidth, img.naturalHeight], rendered: [rect.width, rect.height], ink: share,
    });
    return path === config.stopAt;
  }
  async function open(category) {
    app.setView({ navbarMode: "menu" });
    await until(() => app.state.navbarMode === "menu", "the menu");
    (await until(() => link(category), "the menu item " + category)).click();
    await until(() => ["category", "subcategory"].includes(app.state.navbarMode) && app.state.category === category,
      "category " + category);
  }
  async function openSub(category, sub) {
    app.setView({ navbarMode: "category", category: category });
    await until(() => app.state.navbarMode === "category", "the category view " + category);
    (await until(() => link(sub), "the subcategory item " + sub)).click();
    await until(() => app.state.navbarMode === "subcategory" && app.state.subcategory === sub, "subcategory " + sub);
  }
  try {
    const ready = () => typeof app !== "undefined" && typeof categories !== "undefined" && link("Workflow");
    await until(ready, "the report app");
    walk:
    for (const category of Object.keys(categories).sort(byName)) {
      out.categories.push(category);
      await open(category);
      const single = app.state.navbarMode === "subcategory";
      const subs = single ? [app.state.subcategory] : Object.keys(categories[category]).sort(byName);
      for (const sub of subs) {
        if (!single) await openSub(category, sub);
        const n = (await until(() => rows().length > 0 && rows(), "the results of " + sub)).length;
        for (let i = 0; i < n; i++) {
          if (await showRow(i, category, sub)) {
            out.stopped = true;
            break walk;
          }
        }
      }
    }
  } catch (e) {
    out.errors.push(String(e));
  }
  if (!config.stopAt) {
    const pre = document.createElement("pre");
    pre.id = "MARKER";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
})();
""".replace("MARKER", MARKER)


def find_chromium(given: str | None = None) -> str | None:
    for name in [given, os.environ.get("CHROMIUM"), *BROWSERS]:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def harness(report: Path, folder: Path, config: dict, style: str = "") -> Path:
    """A copy of `report` in `folder` with the driver (and `style`, CSS) appended; the report itself is left as it
    is."""
    page = report.read_text(encoding="utf-8")
    end = page.rfind("</body>")
    if end < 0:
        raise SystemExit(f"{report}: not an HTML page (no </body>)")
    script = f"<style>{style}</style>\n" if style else ""
    script += f"<script>window.ESL_CHECK = {json.dumps(config)};</script>\n<script>{DRIVER}</script>\n"
    out = folder / "report_check.html"
    out.write_text(page[:end] + script + page[end:], encoding="utf-8")
    return out


def chromium(binary: str, page: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Headless Chromium on `page` (file://) with a virtual time budget: the page's timers run without waiting."""
    with tempfile.TemporaryDirectory(prefix="esl-chromium-") as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=120000",
            *args,
            page.resolve().as_uri(),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def run_driver(report: Path, binary: str, size: str) -> dict:
    """The driver's record of the report: {"shown": [...], "errors": [...], "categories": [...]}."""
    with tempfile.TemporaryDirectory(prefix="esl-report-") as folder:
        page = harness(report, Path(folder), {})
        proc = chromium(binary, page, "--dump-dom", f"--window-size={size.replace('x', ',')}")
    found = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"{report}: the check did not finish in Chromium (exit {proc.returncode}); stderr:\n{tail}")
    return json.loads(html.unescape(found.group(1)))


def problems(record: dict, expected: list[str], min_ink: float) -> list[str]:
    """One line per expected plot that does not show properly, and per driver error."""
    out = [f"driver: {e}" for e in record["errors"]]
    shown = record["shown"]
    for want in expected:
        hits = [s for s in shown if s["path"] == want or s["path"].endswith("/" + want.lstrip("/"))]
        if not hits:
            out.append(f"{want}: not shown by the report (categories: {', '.join(record['categories'])})")
            continue
        s = hits[0]
        if min(s["natural"]) <= 0:
            out.append(f"{want}: the <img> element did not decode (natural size {s['natural']})")
        elif min(s["rendered"]) <= 0:
            out.append(f"{want}: the <img> element has no rendered size ({s['rendered']})")
        elif s["ink"] is None or s["ink"] < min_ink:
            out.append(f"{want}: blank: {s['ink']} of its pixels differ from the background (< {min_ink})")
    return out


def screenshot(report: Path, binary: str, show: str, out: Path, size: str, max_bytes: int) -> None:
    """`out`: a PNG of the report as a user sees it with `show` (a result's path, or its end) opened via the UI."""
    record_paths = [s["path"] for s in run_driver(report, binary, size)["shown"]]
    target = next((p for p in record_paths if p == show or p.endswith("/" + show.lstrip("/"))), None)
    if target is None:
        raise SystemExit(f"{report}: {show} is not among the shown images ({', '.join(record_paths)})")
    with tempfile.TemporaryDirectory(prefix="esl-report-") as folder:
        # headless Chromium's viewport is shorter than the window it captures: the report's full-height panes
        # (Tailwind's h-screen, 100vh) are given the window's height so the picture has no blank band at the bottom
        height = int(size.split("x")[1])
        page = harness(report, Path(folder), {"stopAt": target}, f".h-screen {{ height: {height}px !important; }}")
        shot = Path(folder) / "shot.png"
        proc = chromium(binary, page, f"--screenshot={shot}", f"--window-size={size.replace('x', ',')}")
        if not shot.is_file():
            raise SystemExit(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1000:]}")
        from PIL import Image

        image = Image.open(shot).convert("RGB")
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, optimize=True)
        if out.stat().st_size > max_bytes:  # a palette of 256 colours: flat UI colours and plots lose nothing visible
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({image.size[0]}x{image.size[1]}, {out.stat().st_size // 1024} kB) showing {target}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="Snakemake's report.html (snakemake --report)")
    parser.add_argument("--expect", action="append", default=[], help="a plot that must show (its path or its end)")
    parser.add_argument("--plots", type=Path, action="append", default=[], help="every *.png of this folder must show")
    parser.add_argument("--min-ink", type=float, default=0.002, help="least share of non-background pixels")
    parser.add_argument("--chromium", help="the browser binary (default: $CHROMIUM, then chromium on the PATH)")
    parser.add_argument("--size", default="1280x1000", help="window size WxH")
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the report showing --show instead of checking")
    parser.add_argument("--show", default="plots/miou.png", help="the result the screenshot shows")
    parser.add_argument("--max-bytes", type=int, default=300_000, help="quantise the screenshot above this size")
    args = parser.parse_args(argv)
    binary = find_chromium(args.chromium)
    if binary is None:
        print(f"no Chromium found ({', '.join(BROWSERS)}, $CHROMIUM); Debian: apt-get install -y chromium")
        return 2
    if not args.report.is_file():
        print(f"{args.report}: not found (make it with snakemake --report {args.report})")
        return 1
    if args.screenshot:
        screenshot(args.report, binary, args.show, args.screenshot, args.size, args.max_bytes)
        return 0
    expected = list(args.expect)
    for folder in args.plots:
        pngs = sorted(folder.glob("*.png"))
        if not pngs:
            print(f"{folder}: no plots")
            return 1
        expected += [f"{folder.name}/{p.name}" for p in pngs]  # matched by the end of the path
    record = run_driver(args.report, binary, args.size)
    for s in record["shown"]:
        ink = "?" if s["ink"] is None else f"{s['ink']:.3f}"
        print(f"shown {s['path']}: {s['natural'][0]}x{s['natural'][1]} px, ink {ink} ({s['category']})")
    found = problems(record, expected, args.min_ink)
    for line in found:
        print(f"FAIL {line}")
    if not found:
        print(f"OK: {len(expected)} expected plots shown, {len(record['shown'])} images in the report")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
