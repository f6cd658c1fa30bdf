"""report.html in headless chromium (Debian package): no errors, every image decoded and not blank."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from meddenoise.pipeline import evaluate_paths
from tests.report.phantom_series import make_phantom_set

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Collect errors from the very start of the page; after load, measure every image on a canvas.
CAPTURE = """<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message||e)));
const __ce=console.error;console.error=(...a)=>{__errors.push(a.join(' '));__ce(...a)};</script>"""
CHECK = """<script>addEventListener('load',()=>{const out=[];for(const img of document.images){let sd=-1;
if(img.complete&&img.naturalWidth>0){const c=document.createElement('canvas');c.width=img.naturalWidth;
c.height=img.naturalHeight;const g=c.getContext('2d');g.drawImage(img,0,0);
const d=g.getImageData(0,0,c.width,c.height).data;let s=0,s2=0,n=0;
for(let i=0;i<d.length;i+=4){const v=(d[i]+d[i+1]+d[i+2])/3;s+=v;s2+=v*v;n++;}
const m=s/n;sd=Math.sqrt(s2/n-m*m);}
out.push({w:img.naturalWidth,h:img.naturalHeight,sd:sd});}
const pre=document.createElement('pre');pre.id='imgcheck';
pre.textContent=JSON.stringify({images:out,errors:window.__errors});document.body.appendChild(pre);});</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs the Debian package chromium (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    return found


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    series = make_phantom_set(tmp_path / "series")
    _, files = evaluate_paths(
        denoised_path=series.denoised,
        reference_path=series.full,
        input_path=series.low,
        out_dir=tmp_path / "r",
    )
    assert files.html is not None
    page = files.html.read_text(encoding="utf-8")
    n_images = page.count("<img ")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + CAPTURE, 1).replace("</body>", CHECK + "</body>"))

    dom = _run(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the page's load handler never ran"
    result = json.loads(match.group(1).replace("&quot;", '"'))
    assert result["errors"] == []
    assert len(result["images"]) == n_images == 6
    for image in result["images"]:
        assert image["w"] > 100 and image["h"] > 100  # decoded
        assert image["sd"] > 5.0  # not blank: real grey-level structure
    assert "Uncaught" not in dom.stderr

    shot = tmp_path / "report.png"
    taken = _run(
        chromium, tmp_path / "profile", "--window-size=1200,2400", f"--screenshot={shot}", files.html.as_uri()
    )
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1200)
    assert pixels.std() > 20.0 and pixels.min() < 50  # text, images and plots, not a blank page
