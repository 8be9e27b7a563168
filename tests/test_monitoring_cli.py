"""Issue 18 through the command line: monitor, whatif, audit, the encrypted audit, compare --out, report, demo
--report, and the report in a real headless browser (Debian's chromium; skipped, saying so, where absent) whose
only way out is a recording proxy on the loopback: the page must ask it for nothing (a control page that fetches
shows the check can fail)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli_subprocess

import hefed
from hefed.data import compute_statistics
from hefed.monitoring import ReportInputs, audit_table, build_report, whatif_table
from hefed.roles import solve

TARGET = "co2_t"
FEATURES = ["coal_t", "natural_gas_t", "diesel_t", "electricity_mwh", "clinker_t"]


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("hefed: error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring-cli")
    plants = hefed.datasets.make_factories(n_factories=5, seed=3)
    paths = {}
    for name, frame in plants.items():
        paths[name] = root / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    model = solve(compute_statistics(pd.concat(plants.values(), ignore_index=True), TARGET, FEATURES))
    model_path = model.save(root / "model.json")
    return root, plants, paths, LinearModelPath(model_path)


class LinearModelPath(type(Path())):  # a Path that also loads the model once
    @property
    def model(self):
        return hefed.LinearModel.load(self)


def test_monitor_writes_alerts_and_chart(site, cli, tmp_path):
    _, plants, paths, model = site
    out, chart = tmp_path / "alerts.csv", tmp_path / "chart.png"
    result = cli("monitor", paths["steel-02"], "--model", model, "--out", out, "--plot", chart)
    assert result.returncode == 0, result.stderr
    alerts = pd.read_csv(out)
    assert len(alerts) == len(plants["steel-02"]) and alerts["row"].iloc[0] == 1
    assert set(alerts["alert"]) <= {0, 1}
    png = chart.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert "CUSUM" in result.stdout and "EWMA" in result.stdout
    again = cli("monitor", paths["steel-02"], "--model", model, "--out", out)
    assert "exists" in one_line_error(again, 2)


def test_monitor_refuses_bad_tables_in_one_line(site, cli, tmp_path):
    _, plants, _, model = site
    broken = plants["steel-02"].astype({"coal_t": object})
    broken.loc[17, "coal_t"] = "n/a?"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    out = tmp_path / "alerts.csv"
    message = one_line_error(cli("monitor", tmp_path / "broken.csv", "--model", model, "--out", out), 1)
    assert "broken.csv" in message and "coal_t" in message and "row 18" in message
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "broken.csv"]
    plants["steel-02"].drop(columns=[TARGET]).to_csv(tmp_path / "no_target.csv", index=False)
    assert "co2_t" in one_line_error(cli("monitor", tmp_path / "no_target.csv", "--model", model, "--out", out), 1)
    assert not out.exists()


def test_whatif_cli_is_the_library(site, cli, tmp_path):
    _, _, paths, model = site
    result = cli("whatif", paths["cement-01"], "--model", model, "--set", "natural_gas_t=+20%,coal_t=-20%", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    direct = whatif_table(model.model, paths["cement-01"], "natural_gas_t=+20%,coal_t=-20%")
    assert shown["change"] == direct.change and shown["conf_int"] == list(direct.conf_int)
    assert "is not COLUMN=CHANGE" in one_line_error(cli("whatif", paths["cement-01"], "--model", model, "--set",
                                                        "coal_t"), 2)


def test_whatif_refuses_a_model_without_covariance(site, cli, tmp_path):
    _, plants, paths, _ = site
    stats = compute_statistics(plants["cement-01"], TARGET, FEATURES)
    stats.contributors = ["a", "b", "c"]
    withheld = solve(stats).save(tmp_path / "withheld.json")
    message = one_line_error(cli("whatif", paths["cement-01"], "--model", withheld, "--set", "coal_t=-20%"), 2)
    assert "covariance" in message


def test_audit_cli_locally(site, cli):
    _, plants, paths, model = site
    result = cli("audit", paths["glass-05"], "--model", model, "--elv", "2000", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    direct = audit_table(plants["glass-05"], model=model.model, elv=2000.0)
    assert shown["relative_accuracy_pct"] == direct.relative_accuracy and shown["variability"]["passed"] in (
        True, False)
    text = cli("audit", paths["glass-05"], "--model", model).stdout
    assert "relative accuracy" in text and "verdict" in text
    assert "not both" in one_line_error(cli("audit", paths["glass-05"], "--model", model, "--prediction-column",
                                            "coal_t"), 2)


def test_encrypted_audit_through_the_commands(site, cli, tmp_path):
    """keygen → encrypt --mode audit --model ×3 → aggregate → decrypt → consortium-audit: the pooled pairs' RA."""
    _, plants, paths, model = site
    assert cli("keygen", "--out-dir", tmp_path / "keys", "--bits", 1024, "--insecure-test-key").returncode == 0
    names = ["cement-01", "steel-02", "chemicals-03"]
    bundles = []
    for name in names:
        bundles.append(tmp_path / f"{name}.audit.json")
        step = cli("encrypt", paths[name], "--target", TARGET, "--public-key", tmp_path / "keys" / "public_key.json",
                   "--factory-id", name, "--mode", "audit", "--model", model, "--out", bundles[-1])
        assert step.returncode == 0, step.stderr
    assert cli("aggregate", *bundles, "--out", tmp_path / "agg.json").returncode == 0
    step = cli("decrypt", tmp_path / "agg.json", "--allow-unsigned", "--private-key",
               tmp_path / "keys" / "private_key.json", "--out", tmp_path / "audit_sums.json")
    assert step.returncode == 0, step.stderr
    result = cli("consortium-audit", tmp_path / "audit_sums.json", "--model", model, "--elv", "3000", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    pooled = pd.concat([plants[n] for n in names], ignore_index=True)
    direct = audit_table(pooled, model=model.model, elv=3000.0)
    assert shown["relative_accuracy_pct"] == pytest.approx(direct.relative_accuracy, rel=1e-12)
    assert shown["n"] == len(pooled) and sorted(shown["contributors"]) == sorted(names)
    other = solve(compute_statistics(plants["cement-01"], TARGET, FEATURES)).save(tmp_path / "other.json")
    message = one_line_error(cli("consortium-audit", tmp_path / "audit_sums.json", "--model", other), 2)
    assert "another model" in message


def _hostile_comparison(tmp_path: Path) -> Path:
    row = {"factory": "<script>alert(1)</script> $x^{$", "n_test": 3, **{f"{m}_{k}": 1.0 for m in
                                                                   ("local", "federated", "centralised", "finetuned")
                                                                   for k in ("mse", "r2")}}
    overall = dict(row, factory="all factories")
    obj = {"format": "hefed.comparison", "version": 1, "target": TARGET, "features": FEATURES, "rows": [row],
           "overall": overall, "max_abs_coef_diff": 1e-14, "max_rel_coef_diff": 1e-15, "encrypted_overall": {},
           "dropped_local": {"<img src=http://example.invalid/x>": ["coal_t"]}}
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(obj))
    return path


class _Tags(HTMLParser):
    """Every tag's attributes and every style block of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.attributes: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def _external_references(page: str) -> list[str]:
    """Attributes or CSS that would make a browser fetch something beyond the page's own data: URIs."""
    parsed = _Tags(page)
    found = [f"<{tag} {name}={value[:40]}>" for tag, name, value in parsed.attributes
             if name in ("src", "href", "srcset", "action", "poster", "data", "background")
             and not value.startswith("data:image/png;base64,")]
    found += [style[:40] for style in parsed.styles if "url(" in style or "@import" in style]
    return found


def _images(page: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)


def test_report_is_self_contained_and_escaped(site, cli, tmp_path):
    _, _, paths, model = site
    out = tmp_path / "report.html"
    result = cli("report", "--model", model, "--comparison", _hostile_comparison(tmp_path), "--residuals",
                 paths["steel-02"], "--out", out)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img src=http" not in page and "&lt;img src=http://example.invalid/x&gt;" in page  # text, escaped
    assert _external_references(page) == []  # no attribute or CSS that would fetch anything
    images = _images(page)
    assert len(images) == 3  # coefficients, residuals, comparison
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "FedAvg" not in page  # the comparison carries no FedAvg run
    for text in ("Emission factors", "Fit statistics", "Privacy", model.model.digest(), "steel-02.csv"):
        assert text in page
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert "comparison" in one_line_error(cli("report", "--model", model, "--comparison", bad, "--out",
                                              tmp_path / "r2.html"), 1)
    assert not (tmp_path / "r2.html").exists()


def test_compare_writes_what_report_reads(cli, tmp_path, site):
    _, _, _, model = site
    out = tmp_path / "comparison.json"
    result = cli("compare", "--out", out)
    assert result.returncode == 0, result.stderr
    obj = json.loads(out.read_text())
    assert obj["format"] == "hefed.comparison" and len(obj["rows"]) == 5
    page = tmp_path / "report.html"
    assert cli("report", "--model", model, "--comparison", out, "--out", page).returncode == 0
    assert "all factories" in page.read_text()


# --- the report in a real browser -------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (Debian package 'chromium'; .ci/run installs it where apt-get works): "
                "the browser test cannot run")


#: Hosts of the browser's own services (clock, component updates, sign-in), which it asks for whatever the page;
#: through the recording proxy below they reach nothing. Anything else is a request the page made.
_BROWSER_SERVICES = ("google.com", "gvt1.com", "googleapis.com")


@contextmanager
def _recording_proxy():
    """An HTTP proxy on the loopback that records every request it is sent and answers 502 to all: the browser's
    only way out, so nothing reaches the network, and what the page tried to fetch is known."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self):
            seen.append(self.path)
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = do_CONNECT = _record

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _page_requests(seen: list[str]) -> list[str]:
    """The proxied requests that are not the browser's own services (CONNECT host:port, or GET URL)."""
    hosts = [(urlsplit(path).hostname if "://" in path else path.rsplit(":", 1)[0]) or "" for path in seen]
    return [path for path, host in zip(seen, hosts, strict=True)
            if not any(host == s or host.endswith("." + s) for s in _BROWSER_SERVICES)]


def _browse(page: Path, workdir: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    """Headless chromium on a local file with the network cut: every connection goes to the recording proxy
    (``port``) and no host name resolves; the browser's background services are switched off where a flag can."""
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-pings",
               f"--user-data-dir={workdir / 'profile'}", f"--proxy-server=http://127.0.0.1:{port}",
               "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1200,2400", *extra,
               page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _png_pixels(data: bytes) -> np.ndarray:
    """The screenshot's RGB pixels (Pillow, which matplotlib depends on)."""
    from PIL import Image

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _check_in_browser(page: Path, workdir: Path) -> None:
    """One headless run: the screenshot is a real page (many colours: text, tables, plots), and the DOM it laid out
    has the sections, only data: images and nothing that would fetch from the network."""
    shot = workdir / "shot.png"
    with _recording_proxy() as (port, seen):
        result = _browse(page, workdir, port, f"--screenshot={shot}", "--dump-dom")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    assert _page_requests(seen) == []  # the page asked the network for nothing
    data = shot.read_bytes()
    assert len(data) > 10_000
    pixels = _png_pixels(data)
    assert pixels.shape[:2] == (2400, 1200)
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50, len(colours)  # not a blank page of one colour
    text = result.stdout
    images = _images(text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert "Emission factors" in text and "Privacy" in text  # the page was parsed and laid out
    assert "http://" not in text and "https://" not in text and _external_references(text) == []


def test_report_renders_in_a_headless_browser(site, tmp_path):
    _chromium()
    _, plants, _, model = site
    page = tmp_path / "report.html"
    page.write_text(build_report(ReportInputs(model.model, residuals=(np.arange(10.0), np.arange(10.0) - 5))))
    _check_in_browser(page, tmp_path)


def test_the_browser_check_sees_a_page_that_fetches(tmp_path):
    """The control: a page with an external image and stylesheet is caught by the recording proxy (so the empty
    list above means something) and by the DOM check."""
    _chromium()
    page = tmp_path / "fetching.html"
    page.write_text('<html><body>x<img src="http://example.invalid/x.png">'
                    '<link rel=stylesheet href="https://fonts.example.invalid/a.css"></body></html>')
    with _recording_proxy() as (port, seen):
        result = _browse(page, tmp_path, port, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(_page_requests(seen)) == ["fonts.example.invalid:443", "http://example.invalid/x.png"]
    assert len(_external_references(result.stdout)) == 2


@pytest.mark.slow
def test_demo_report_end_to_end_in_a_real_process(tmp_path):
    """The installed command line as a real process: demo --report, then the page in the browser."""
    page = tmp_path / "demo.html"
    result = run_cli_subprocess("demo", "--bits", 1024, "--insecure-test-key", "--report", page, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"wrote the consortium's report to {page}" in result.stdout
    assert len(_images(page.read_text())) == 3  # coefficients with intervals, residuals, the comparison
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        _check_in_browser(page, tmp_path)


def test_report_plots_fedavg_when_the_comparison_carries_a_run(site, tmp_path):
    _, _, _, model = site
    comparison = json.loads(_hostile_comparison(tmp_path).read_text())
    comparison["fedavg"] = {"rounds": [{"round": r, "rel_coef_error": 0.5 ** r} for r in range(1, 6)],
                            "fixed_point": {"rel_coef_error": 0.01}}
    page = build_report(ReportInputs(model.model, comparison))
    assert "FedAvg against the exact model" in page
    assert len(_images(page)) == 3  # coefficients, comparison, FedAvg (only then: see the test above)


def test_report_reads_decrypted_evaluation_sums_or_evaluate_json(site, cli, tmp_path):
    _, plants, _, model = site
    from hefed.roles import evaluate_local

    sums = evaluate_local(model.model, plants["glass-05"])
    sums.contributors = ["glass-05", "<b>x</b>", "paper-06"]
    decrypted = sums.save(tmp_path / "evaluation.json")
    as_json = tmp_path / "metrics.json"
    as_json.write_text(json.dumps({"ok": True, "metrics": sums.metrics()}))
    for source in (decrypted, as_json):
        out = tmp_path / f"{source.stem}.html"
        result = cli("report", "--model", model, "--evaluation", source, "--out", out)
        assert result.returncode == 0, result.stderr
        page = out.read_text()
        assert "Consortium holdout evaluation" in page and f"{sums.metrics()['mse']:.6g}" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in (tmp_path / "evaluation.html").read_text()
    (tmp_path / "junk.json").write_text(json.dumps({"metrics": {"mse": "1"}}))
    message = one_line_error(cli("report", "--model", model, "--evaluation", tmp_path / "junk.json", "--out",
                                 tmp_path / "junk.html"), 1)
    assert "junk.json" in message and not (tmp_path / "junk.html").exists()
