"""`recur ablate`: one harness for every group, interleaved jobs, tables on disk, held-out checks, resume."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import run_cli
from recur.evidence.ablate import COLUMNS, GROUPS, job_order
from recur.core.trace import TraceStore
from recur.mechanism_store.builtin import builtin_source
from recur.mechanism_store.store import MechanismStore

def _sign_flip_p(diffs: list[float]) -> float:
    """Two-sided sign-flip p by enumerating every sign pattern (1.0 when every difference is 0)."""
    from itertools import product

    if not any(diffs):
        return 1.0
    observed = abs(sum(diffs))
    patterns = list(product((1, -1), repeat=len(diffs)))
    return sum(abs(sum(s * d for s, d in zip(p, diffs))) >= observed - 1e-12 for p in patterns) / len(patterns)


ARGS = ("ablate", "--task", "synthetic", "--model", "scripted", "--repeats", "2", "--max-trials", "14",
        "--groups", "A,B,D", "--transfer-task", "synthetic", "--seed", "3", "--instances", "1")  # one run per repeat


def _ablation_dir(workdir: Path) -> Path:
    (found,) = (workdir / ".recur" / "ablations").iterdir()
    return found


def test_job_order_rotates_groups_per_repeat() -> None:
    order = job_order(["A", "B", "C"], 3)
    assert order[:3] == [("A", 0), ("B", 0), ("C", 0)]
    assert order[3:6] == [("B", 1), ("C", 1), ("A", 1)]
    assert order[6:] == [("C", 2), ("A", 2), ("B", 2)]
    assert [g for g, r in order if r == 0][0] != [g for g, r in order if r == 1][0]


@pytest.mark.long(seconds=37)
def test_ablate_runs_every_group_under_one_harness_and_resumes(workdir: Path) -> None:
    res = run_cli(*ARGS, cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| A | level 1 only |" in res.stdout and "| D | level 1 + level 2 |" in res.stdout
    out = _ablation_dir(workdir)
    results = json.loads((out / "results.json").read_text())
    rows = {r["group"]: r for r in results["groups"]}
    assert list(rows) == ["A", "B", "D"] and all(r["repeats"] == 2 for r in rows.values())
    assert all(r["trials_mean"] == 14 for r in rows.values())  # the same level-1 budget for every group
    assert rows["A"]["p_vs_A"] is None
    for g in ("B", "D"):  # the table's p is the two-sided sign-flip test of the paired deltas, counted here by hand
        diffs = [x - y for x, y in zip(rows[g]["deltas"], rows["A"]["deltas"])]
        assert rows[g]["p_vs_A"] == pytest.approx(_sign_flip_p(diffs))

    jobs = {(p.parent.name): json.loads(p.read_text()) for p in out.glob("*-r*/ablation-job.json")}
    assert sorted(jobs) == ["A-r0", "A-r1", "B-r0", "B-r1", "D-r0", "D-r1"]
    for r in (0, 1):  # one harness: the same seed gives the same baseline trials in every group
        starts = {jobs[f"{g}-r{r}"]["start_metric"] for g in "ABD"}
        assert len(starts) == 1
    for name, job in jobs.items():
        assert job["delta"] == job["best_metric"] - job["start_metric"]
        assert job["trials"] == 14 and len(job["best_commit"]) == 40
        applied = MechanismStore(Path(job["workspace"]) / ".recur" / "store").list(status="applied")
        assert [m.slug for m in applied] == GROUPS[name[0]]["apply"]  # B runs with freeze_guidance from the start
        promoted = MechanismStore(Path(job["workspace"]) / ".recur" / "store").list(status="promoted")
        assert [m["name"] for m in job["promoted"]] == [m.name for m in promoted]

    table = list(csv.reader(io.StringIO((out / "table.csv").read_text())))
    assert table[0] == COLUMNS and [row[0] for row in table[1:]] == ["A", "B", "D"]
    assert (out / "table.md").read_text().startswith("Δ best metric")

    # the same command again reads finished jobs back; a lost job result is rebuilt from its finished run, and
    # every promotion in it (one planted here, so the check never depends on a run happening to promote) is
    # re-checked on held-out seeds and on the transfer task, outside the run's budget
    lost = out / "D-r1" / "ablation-job.json"
    before = json.loads(lost.read_text())
    store = MechanismStore(Path(before["workspace"]) / ".recur" / "store")
    planted = store.promote(store.add_candidate(1, "tpe", builtin_source("tpe")).branch)
    lost.unlink()
    again = run_cli(*ARGS, cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads(lost.read_text())
    assert after["delta"] == before["delta"] and after["trials"] == 14
    entry = [m for m in after["promoted"] if m["name"] == planted.name][0]
    info = MechanismStore(Path(after["workspace"]) / ".recur" / "store").info(planted.name)
    assert "held-out seeds" in info.trailers["Held-Out"] and entry["heldout_trials"] > 0
    assert info.trailers["Transfer"].startswith("synthetic:") and "transfer" in entry
    table = (out / "table.md").read_text()  # the transfer score is a column of the table, as in the trailer
    moved = "-" if entry["transfer"] is None else f"{entry['transfer']:+.5f}"
    assert "| transfer to synthetic |" in table and f"| {moved} |" in table
    assert json.loads((out / "results.json").read_text())["groups"][0]["deltas"] == rows["A"]["deltas"]


def test_a_repeat_averages_its_instances_on_the_same_seeds_in_every_group(workdir: Path) -> None:
    res = run_cli("ablate", "--task", "synthetic", "--repeats", "2", "--instances", "2", "--groups", "A,B",
                  "--max-trials", "8", "--seed", "5", cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "× 2 instances" in res.stdout and "| A | level 1 only | 2 × 2 |" in res.stdout
    out = _ablation_dir(workdir)
    jobs = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/ablation-job.json")}
    assert sorted(jobs) == ["A-r0", "A-r0-i1", "A-r1", "A-r1-i1", "B-r0", "B-r0-i1", "B-r1", "B-r1-i1"]
    seeds = {name: TraceStore(Path(job["workspace"]) / ".recur" / "trace.db").run()["seed"] for name, job in jobs.items()}
    assert [seeds[f"A-{n}"] for n in ("r0", "r0-i1", "r1", "r1-i1")] == [5, 6, 7, 8]  # every run its own seed
    assert all(seeds[f"B-{n}"] == seeds[f"A-{n}"] for n in ("r0", "r0-i1", "r1", "r1-i1"))  # paired across groups
    rows = {r["group"]: r for r in json.loads((out / "results.json").read_text())["groups"]}
    for g in "AB":
        for r in (0, 1):
            runs = [jobs[f"{g}-r{r}"]["delta"], jobs[f"{g}-r{r}-i1"]["delta"]]
            assert rows[g]["deltas"][r] == pytest.approx(sum(runs) / 2)
            assert rows[g]["curves"][r][-1] == pytest.approx(sum(runs) / 2)  # the curve ends at the repeat's Δ
    assert rows["B"]["p_vs_A"] == pytest.approx(_sign_flip_p([b - a for b, a in zip(rows["B"]["deltas"], rows["A"]["deltas"])]))
    (added,) = json.loads((out / "results.json").read_text())["added"]  # B extends A: what B adds, run by run
    diffs = [b - a for b, a in zip(rows["B"]["deltas"], rows["A"]["deltas"])]
    assert (added["group"], added["extends"], added["runs"]) == ("B", "A", 4)
    assert added["mean_diff"] == pytest.approx(sum(diffs) / 2) and added["p"] == pytest.approx(_sign_flip_p(diffs))
    differ = [name for name in jobs if name.startswith("B") and jobs[name]["delta"] != jobs["A" + name[1:]]["delta"]]
    assert added["runs_differ"] == len(differ) == added["runs_lower"] + added["runs_higher"]
    assert f"B - A (what B adds, paired by repeat): {added['mean_diff']:+.4f}" in (out / "table.md").read_text()


def test_bad_groups_and_unfit_budgets_are_one_clear_line(workdir: Path) -> None:
    bad = run_cli("ablate", "--groups", "A,Z", "--max-trials", "10", "--model", "scripted", cwd=workdir)
    assert bad.returncode == 1 and "unknown group(s) Z" in bad.stderr and "Traceback" not in bad.stderr
    unfit = run_cli("ablate", "--groups", "A,E", "--max-trials", "5", "--model", "scripted", cwd=workdir)
    assert unfit.returncode == 1 and "group E" in unfit.stderr and "cannot fit" in unfit.stderr


@pytest.mark.long(seconds=19)
def test_report_of_an_ablation_only_workspace(workdir: Path) -> None:
    res = run_cli("ablate", "--task", "synthetic", "--repeats", "2", "--groups", "A,B", "--max-trials", "5", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    rep = run_cli("report", "--out", str(workdir / "rep"), cwd=workdir)
    assert rep.returncode == 0 and "Traceback" not in rep.stderr, rep.stderr
    from PIL import Image

    with Image.open(workdir / "rep" / "ablation.png") as im:
        im.load()
        assert 600 <= im.size[0] <= 4000
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        inked = sum(n for n, c in colours if c != (255, 255, 255)) / (im.size[0] * im.size[1])
        assert len(colours) > 20 and inked > 0.01  # drawn on: bars, axes and labels, not a blank canvas
    html = (workdir / "rep" / "index.html").read_text()
    assert '<img src="ablation.png"' in html and '<img src="best_so_far.png"' in html
    assert html.count("Not plotted:") == 3  # trials, lineage and hook calls need a run's own trace
    results = json.loads((_ablation_dir(workdir) / "results.json").read_text())
    for g in results["groups"]:  # one best-so-far curve per repeat: a point per charged trial, never worse, ending at Δ
        assert len(g["curves"]) == 2
        for curve, delta in zip(g["curves"], g["deltas"]):
            assert len(curve) == 5 and curve[0] == 0.0
            assert all(b <= a for a, b in zip(curve, curve[1:])) and curve[-1] == delta
