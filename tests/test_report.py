"""``recur report``: real runs of the synthetic task, then the real command; the PNGs must decode."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from recur.core.trace import TraceStore


def _env(factory: pytest.TempPathFactory) -> dict:
    return {"RECUR_CACHE_DIR": str(factory.getbasetemp() / "recur-cache")}


@pytest.fixture(scope="module")
def two_level_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real --levels 2 run: baseline, two incumbent windows, then mechanism candidates with candidate/control
    windows."""
    ws = tmp_path_factory.mktemp("report-l2")
    # no screen: the candidate races, which an unscreened level does only where a race can reach a verdict
    # (2 blocks of 1-trial windows at alpha 0.25 and 2 held-out blocks: 8 trials)
    res = run_cli("run", "--task", "synthetic", "--model", "scripted", "--levels", "2", "--max-trials", "20",
                  "--screen-seeds", "0", "--window", "1", "--max-pairs", "2", "--alpha", "0.25", cwd=ws,
                  env=_env(tmp_path_factory))
    assert res.returncode == 0, res.stderr
    return ws


def _check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes every pixel, not just the header
        w, h = im.size
    assert 600 <= w <= 4000 and 200 <= h <= 4000, (path.name, w, h)


def _written(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.png"))


def _report(ws: Path, out: Path, *extra: str):
    res = run_cli("report", "--out", str(out), *extra, cwd=ws)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


def _images_in(html: str) -> set[str]:
    return set(re.findall(r'<img src="([^"]+)"', html))


def test_report_of_a_two_level_run(two_level_ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = _report(two_level_ws, out)
    assert _written(out) == ["hook_calls.png", "lineage.png", "trials.png"]
    for name in _written(out):
        _check_png(out / name)
    html = (out / "index.html").read_text()
    assert _images_in(html) == set(_written(out))  # relative names, every written image shown
    run_id = TraceStore(two_level_ws / ".recur" / "trace.db").run()["id"]
    assert run_id in html and "synthetic" in html
    assert "level-1 trials</th><td>20 (" in html and "mechanisms in the store" in html
    assert "Not plotted: no ablation has been run" in html
    assert "left out ablation" in res.stdout and str(out / "index.html") in res.stdout
    # "What level 2 found" is generated from the trace: every candidate level 2 made is counted and shown
    found = (out / "found.md").read_text()
    assert found.startswith("## What level 2 found") and found in res.stdout and "What level 2 found" in html
    made = [t for t in TraceStore(two_level_ws / ".recur" / "trace.db").trials(run_id, level=2)
            if not t["candidate"]["payload"].get("incumbent")]
    assert made, "a 20-trial level-2 run makes at least one candidate"
    assert f"Level 2 considered {len(made)} candidates" in found
    for t in made:
        if (t["outcome"] or {}).get("info", {}).get("pairs"):
            assert f"| {t['outcome']['info']['mechanism']} |" in found


def test_report_plots_the_newest_ablation_only_when_one_exists(two_level_ws: Path, tmp_path: Path) -> None:
    root = two_level_ws / ".recur" / "ablations"
    for i, name in enumerate(["older", "newer"]):
        d = root / name
        d.mkdir(parents=True)
        groups = [{"group": g, "label": label, "repeats": 3, "deltas": [-0.01 * k * (j + 1) for j in range(3)],
                   "mean_delta": -0.02 * k, "ci_low": -0.02 * k - 0.01, "ci_high": -0.02 * k + 0.01,
                   "p_vs_A": None if g == "A" else 0.05 * k}
                  for k, (g, label) in enumerate([("A", "level 1 only"), ("B", "levels 1-2"), ("C", "levels 1-3")])]
        added = [{"group": "C", "extends": "B", "mean_diff": -0.02, "ci_low": -0.05, "ci_high": 0.01, "p": 0.25,
                  "runs": 3, "runs_differ": 2, "runs_lower": 2, "runs_higher": 0}]
        (d / "results.json").write_text(json.dumps({"id": name, "task": "synthetic", "metric": "metric", "groups": groups,
                                                    "added": added}))
        os.utime(d, (1_700_000_000 + i, 1_700_000_000 + i))
    out = tmp_path / "report"
    try:
        _report(two_level_ws, out, "--workdir", str(two_level_ws))
        assert "ablation.png" in _written(out)
        _check_png(out / "ablation.png")
        html = (out / "index.html").read_text()
        assert _images_in(html) == set(_written(out)) and "ablation.png" in _images_in(html)
        assert "Ablation newer" in html and "ablations/older" not in html
        found = (out / "found.md").read_text()
        assert "Newest ablation `newer`" in found and "- C - B: -0.02 [-0.05, +0.01], two-sided p 0.25; 2 of 3 runs differ" in found
    finally:
        for d in root.iterdir():
            (d / "results.json").unlink()
    _report(two_level_ws, out)  # same folder again, no ablation now: the old plot must not linger
    assert "ablation.png" not in _written(out)
    assert "ablation.png" not in (out / "index.html").read_text()


def test_report_of_a_level_1_run_leaves_out_what_is_missing(tmp_path_factory: pytest.TempPathFactory, workdir: Path) -> None:
    res = run_cli("run", "--task", "synthetic", "--model", "scripted", "--max-trials", "4", cwd=workdir,
                  env=_env(tmp_path_factory))
    assert res.returncode == 0, res.stderr
    out = workdir / "rep"
    _report(workdir, out)
    assert _written(out) == ["trials.png"]
    _check_png(out / "trials.png")
    html = (out / "index.html").read_text()
    assert _images_in(html) == {"trials.png"}
    assert html.count("Not plotted:") == 4 and "no mechanism hook was called" in html  # + ablation, best so far


def test_no_trace_is_one_clear_error_line(workdir: Path) -> None:
    res = run_cli("report", "--out", str(workdir / "rep"), cwd=workdir)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "no recur trace" in res.stderr and "Traceback" not in res.stderr
    assert not (workdir / ".recur").exists() and not (workdir / "rep").exists()


def test_lineage_caps_a_large_store(tmp_path: Path) -> None:
    """60 branches (ports and variants among them): the 40 newest are drawn, with a note; no CLI needed."""
    from recur.evidence.report import LINEAGE_CAP, ReportData, plot_lineage
    from recur.mechanism_store.store import MechanismInfo

    infos = []
    statuses = ["promoted", "rejected", "inactive", "unsafe", "candidate"]
    for i in range(60):
        level = 1 + i % 3
        parent = infos[i - 3].branch if i >= 3 and i % 2 else None
        trailers = {"Level": str(level), "Status": statuses[i % 5], "Score": f"{(i - 30) / 1000:.3f}"}
        if parent:
            trailers["Parent"] = parent
        infos.append(MechanismInfo(f"mech/L{level}/m{i}_slug-{i:08x}", "0" * 40, trailers))
    run = {"id": "r1", "config": {"metric": "val_bpb", "task": "synthetic"}, "status": "finished",
           "created": 0.0, "finished": 1.0}
    data = ReportData(run=run, trials=[], hook_rows=[], mechanisms=infos, order=[m.branch for m in reversed(infos)])
    caption = plot_lineage(data, tmp_path / "lineage.png")
    assert caption and f"Only the {LINEAGE_CAP} most recent of 60" in caption
    _check_png(tmp_path / "lineage.png")


def test_importing_the_command_does_not_import_matplotlib() -> None:
    code = ("import sys, typer; from recur.evidence import report, report_cli; report_cli.register(typer.Typer()); "
            "print('matplotlib' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
