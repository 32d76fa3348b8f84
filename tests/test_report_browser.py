"""The committed benchmarks' reports, from their JSON, and the report opened in a real browser
(headless Chromium; skipped where none is installed: `apt-get install chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shoptransfer.evaluation.html_report import render_report

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import reports as benchmark_report  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# added to a copy of the page: errors of any kind (scripts, images that fail to load) and the
# size every figure renders at, written into the DOM that --dump-dom prints
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const figures = [...document.querySelectorAll("figure img")].map(img => {
    const box = img.getBoundingClientRect();
    return {width: box.width, height: box.height, natural: img.naturalWidth};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({errors: window.__errors, figures,
    page: document.documentElement.scrollWidth, viewport: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def test_earlier_benchmark_files_become_runner_records() -> None:
    runs = benchmark_report.report_runs("blitzer_128")
    payload = json.loads((BENCHMARKS / "results" / "blitzer_128.json").read_text())
    assert [run.results["name"] for run in runs] == list(payload["cells"])
    first = runs[0].results
    pair = payload["cells"][first["name"]]
    for method in ("self-training", "scratch-tfidf"):
        values = [r["metrics"]["accuracy"] for r in first["results"] if r["label"] == method]
        assert [round(v * 100, 2) for v in values] == pair[method]["seeds"]
    scientific = benchmark_report.report_runs("scientific")[0].results
    models = json.loads((BENCHMARKS / "results" / "scientific.json").read_text())["models"]
    assert len(scientific["results"]) == sum(len(m["runs"]) for m in models.values())


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.mark.skipif(browser() is None, reason="no Chromium installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_errors(tmp_path: Path) -> None:
    page = render_report(benchmark_report.report_runs("fashion"), "fashion")
    expected = page.count("<figure ")
    assert expected >= 6
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</head>", PROBE + "</head>", 1), encoding="utf-8")
    command = [
        str(browser()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--virtual-time-budget=5000",
        "--window-size=412,915",  # a phone
        "--dump-dom",
        probed.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["errors"] == []
    assert not [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert len(probe["figures"]) == expected
    assert all(f["width"] > 100 and f["height"] > 50 and f["natural"] > 0 for f in probe["figures"])
    assert probe["page"] <= probe["viewport"]  # nothing wider than a phone's screen
