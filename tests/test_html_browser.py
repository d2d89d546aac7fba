"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package) takes a
screenshot of a report with a regressed metric; the PNG is decoded here (zlib and struct, no
imaging library) and must show a page, not a blank one, with the regressed card's red in it; the
DOM Chromium builds holds the regressed metric's message, and Chromium logs no console error and
no failed load (the report fetches nothing)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from test_html_report import run_json, write_history

from pytest_llmperf import cli, html_report

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")
RED = (0xC6, 0x28, 0x28)  # the regressed card's border and badge (html_report.CSS)


def chromium() -> str:
    for path in CANDIDATES:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium") or shutil.which("chromium-headless-shell")
    if found is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)
    return done, time.perf_counter() - start


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_rows(data: bytes, max_rows: int) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, the first ``max_rows`` rows unfiltered) of an 8-bit RGB or
    RGBA PNG: the filters of a row need only the row above, so the top of a tall page decodes alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    stride = width * bpp
    rows_wanted = min(max_rows, height)
    raw = zlib.decompressobj().decompress(b"".join(idat), (stride + 1) * rows_wanted)
    rows: list[bytes] = []
    prev = bytearray(stride)
    for r in range(rows_wanted):
        line = raw[r * (stride + 1):(r + 1) * (stride + 1)]
        kind, cur = line[0], bytearray(line[1:])
        if kind == 1:
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
        elif kind == 2:
            cur = bytearray((x + y) & 0xFF for x, y in zip(cur, prev))
        elif kind == 3:
            for i in range(stride):
                cur[i] = (cur[i] + ((cur[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                up_left = prev[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + _paeth(left, prev[i], up_left)) & 0xFF
        rows.append(bytes(cur))
        prev = cur
    return width, height, bpp, rows


def test_report_renders_in_headless_chromium(tmp_path):
    binary = chromium()
    directory = write_history(tmp_path)
    page = tmp_path / "report.html"
    run = run_json()
    # a roofline prediction of the tok/s test: its table must render too
    run["tests"][1]["roofline"] = [{"metric": "tok_per_s", "predicted": 160.8, "unit": "tok/s", "bound": "memory",
                                    "device": "this node: 30.0 GB/s"}]
    html_report.write(page, [("run.json", run)], {"n1": cli.history_data(directory)})
    url = page.resolve().as_uri()
    shot = tmp_path / "out.png"
    done, seconds = run_chromium(binary, tmp_path / "profile", "--enable-logging=stderr", "--v=0",
                                 f"--screenshot={shot}", "--window-size=1280,2000", url)
    print(f"chromium screenshot: {seconds:.2f} s wall")
    assert shot.is_file(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Failed to load" in line
               or ("ERR_" in line and "net::" in line)]
    assert console == [], console
    width, height, bpp, rows = png_rows(shot.read_bytes(), 700)
    assert (width, height) == (1280, 2000)
    pixels = {row[i:i + 3] for row in rows for i in range(0, len(row), bpp * 2)}
    assert len(pixels) > 50, f"{len(pixels)} distinct colours: a blank page?"
    white = bytes((255, 255, 255))
    ink = sum(row[i:i + 3] != white for row in rows for i in range(0, len(row), bpp * 4))
    assert ink > 0.02 * len(rows) * width / 4
    assert bytes(RED) in pixels, "the regressed card's red is not on screen"
    dom, _seconds = run_chromium(binary, tmp_path / "profile2", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="card regressed"' in dom.stdout
    assert "tok_per_s regressed: baseline 90 tok/s -&gt; current 80.4 tok/s" in dom.stdout
    assert "tok_per_s (tok/s) on this node: 30.0 GB/s</h4>" in dom.stdout
    assert "</td><td>80.45</td><td>160.8</td><td>50.0%</td><td>memory</td></tr>" in dom.stdout
