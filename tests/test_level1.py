"""Level 1 end to end on the synthetic task: real git, real subprocess trials, real SQLite."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import git
import pytest

from conftest import RECUR, assert_each_step_once, kill_9_after, run_cli
from recur.core.edits import EditError, apply_params, apply_unified_diff, read_constants
from recur.core.trace import TraceStore
from recur.levels.run import Run, RunOptions


def _trace(workdir: Path) -> TraceStore:
    return TraceStore(workdir / ".recur" / "trace.db")


@pytest.mark.parametrize("seed", range(4))  # seed 1 keeps nothing in 14 trials, the others 1-3 edits
def test_keep_and_revert_land_on_the_branch(workdir: Path, seed: int) -> None:
    opts = RunOptions(model="scripted", task="synthetic", max_trials=14, seed=seed)
    with Run(workdir, opts, resume=False) as run:
        summary = run.execute()
    trace = _trace(workdir)
    trials = [t for t in trace.trials(summary["run_id"], level=1)]
    assert len(trials) == 14 and all(t["status"] != "running" for t in trials)
    kept = [t for t in trials if t["kept"]]
    repo = git.Repo(workdir / ".recur" / "runs" / summary["run_id"] / "work")
    branch = f"recur/{summary['run_id']}"
    log = list(repo.iter_commits(branch))
    assert len(log) == len(kept) + 1  # one commit per kept edit on top of the task files
    assert [c.hexsha for c in log[:-1]] == [t["commit_sha"] for t in reversed(kept)]
    # discarded edits left no trace in the branch's files; the work tree shows the branch head
    assert not repo.is_dirty(untracked_files=True)
    assert repo.active_branch.name == branch
    config = (repo.working_tree_dir and Path(repo.working_tree_dir) / "config.py").read_text()
    constants = read_constants(config)
    if not kept:  # nothing beat the baseline: the files are the task's own
        assert config == (Path(__file__).parents[1] / "tasks" / "synthetic" / "config.py").read_text()
        return
    last = kept[-1]["candidate"]["payload"]["params"]
    assert last and all(constants[name] == value for name, value in last.items())  # the last kept edit is in the files
    # each kept metric beats the best before it (the baseline, then the previous keep) by more than the noise
    # threshold (lower is better)
    threshold = summary["threshold"]
    metrics = [summary["start_metric"]] + [t["metric"] for t in kept]
    assert threshold > 0 and all(b < a - threshold for a, b in zip(metrics, metrics[1:]))


def test_status_and_export_read_the_trace(workdir: Path) -> None:
    res = run_cli("run", "--model", "scripted", "--task", "synthetic", "--max-trials", "6", "--seed", "1", cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert "baseline" in res.stdout and "finished" in res.stdout
    status = run_cli("status", cwd=workdir)
    assert status.returncode == 0 and "levels" in status.stdout and "synthetic" in status.stdout
    assert "scripted (non-LLM search baseline)" in status.stdout and "preset" not in status.stdout  # unset: omitted
    tsv = run_cli("export", "--tsv", cwd=workdir)
    lines = tsv.stdout.strip().splitlines()
    assert lines[0].split("\t") == ["commit", "val_bpb", "memory_gb", "status", "description"]
    assert len(lines) == 7
    assert {l.split("\t")[3] for l in lines[1:]} <= {"baseline", "keep", "discard", "crash"}
    out = workdir / "results.tsv"
    assert run_cli("export", "--out", str(out), cwd=workdir).returncode == 0
    assert out.read_text() == tsv.stdout


def test_bad_arguments_give_one_line_and_exit_2(workdir: Path) -> None:
    for args in (["run", "--levels", "x"], ["run", "--bogus"], ["run", "--level-model", "two=x"]):
        res = run_cli(*args, cwd=workdir)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("recur: error:") and len(res.stderr.strip().splitlines()) == 1
        assert "Traceback" not in res.stderr
    res = run_cli("run", "--model", "scripted", "--task", "nope", cwd=workdir)
    assert res.returncode == 1 and "unknown task 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_second_run_refuses_while_the_workspace_is_locked(workdir: Path) -> None:
    first = subprocess.Popen([RECUR, "run", "--model", "scripted", "--task", "synthetic", "--max-trials", "400"], cwd=workdir,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (workdir / ".recur" / "trace.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        second = run_cli("run", "--model", "scripted", "--task", "synthetic", "--max-trials", "3", cwd=workdir)
        assert second.returncode == 1
        assert "in use by a running recur" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    assert f'"pid": {first.pid}' in second.stderr  # the message names the holder
    # kill -9 released the lock: the next run (here, the lock itself) can take it at once
    from recur.core.workspace import Workspace

    ws = Workspace(workdir)
    ws.lock()
    ws.unlock()


def test_kill_9_then_resume_counts_every_trial_exactly_once(workdir: Path) -> None:
    total = 40
    proc = subprocess.Popen([RECUR, "run", "--model", "scripted", "--task", "synthetic", "--max-trials", str(total), "--seed", "7"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = workdir / ".recur" / "trace.db"
    kill_9_after(proc, db, finished=8, timeout=120)
    res = run_cli("run", "--model", "scripted", "--resume", cwd=workdir)
    assert res.returncode == 0, res.stderr
    trace = _trace(workdir)
    run_id = trace.run()["id"]
    trials = trace.trials(run_id, level=1)
    assert len(trials) == total
    assert_each_step_once(trials)
    assert trace.run(run_id)["status"] == "finished"
    # kept commits recorded in the trace all exist on the run branch
    repo = git.Repo(workdir / ".recur" / "runs" / run_id / "work")
    on_branch = {c.hexsha for c in repo.iter_commits(f"recur/{run_id}")}
    assert {t["commit_sha"] for t in trials if t["kept"]} <= on_branch


def test_resume_without_a_run_is_a_clear_error(workdir: Path) -> None:
    res = run_cli("run", "--model", "scripted", "--resume", cwd=workdir)
    assert res.returncode == 1 and "nothing to resume" in res.stderr


SOURCE = "# doc\nLR = 0.003  # keep me\nDEPTH = 4\nNAME = 'gelu'\n\ndef f():\n    LR = 1\n"
SPACE = {"LR": {"type": "float", "low": 1e-5, "high": 1.0, "log": True}, "DEPTH": {"type": "int", "low": 1, "high": 8},
         "NAME": {"type": "choice", "choices": ["gelu", "relu"]}}


def test_param_edits_keep_formatting_and_reject_bad_values() -> None:
    out = apply_params(SOURCE, {"LR": 0.01, "DEPTH": 6, "NAME": "relu"}, SPACE)
    assert "LR = 0.01  # keep me" in out and "DEPTH = 6" in out and "NAME = 'relu'" in out
    assert "    LR = 1" in out  # function bodies untouched
    for bad, msg in [({"NOPE": 1}, "unknown parameter"), ({"DEPTH": 2.5}, "integer"), ({"DEPTH": 99}, "outside"),
                     ({"LR": "x"}, "number"), ({"NAME": "tanh"}, "not one of"), ({}, "at least one")]:
        with pytest.raises(EditError, match=msg):
            apply_params(SOURCE, bad, SPACE)


def test_unified_diff_applies_and_bad_diffs_are_rejected() -> None:
    diff = "--- a/train.py\n+++ b/train.py\n@@ -3,1 +3,1 @@\n-DEPTH = 4\n+DEPTH = 5\n"
    assert "DEPTH = 5" in apply_unified_diff(SOURCE, diff)
    with pytest.raises(EditError, match="expects"):
        apply_unified_diff(SOURCE, "@@ -3,1 +3,1 @@\n-DEPTH = 7\n+DEPTH = 5\n")
    with pytest.raises(EditError, match="does not parse"):
        apply_unified_diff(SOURCE, "@@ -3,1 +3,1 @@\n-DEPTH = 4\n+DEPTH = (\n")
    with pytest.raises(EditError, match="no hunks"):
        apply_unified_diff(SOURCE, "not a diff")


def test_a_changed_pinned_evaluator_voids_the_trial(workdir: Path) -> None:
    from recur.core.records import VOID
    from recur.levels.run import RunError

    opts = RunOptions(model="scripted", task="synthetic", max_trials=4, seed=1)
    with Run(workdir, opts, resume=False) as run:
        rt = run.setup()
        rt.pins = {**rt.pins, "surface.py": "0" * 64}  # as if the evaluator changed after the run started
        with pytest.raises(RunError, match="every baseline trial failed"):
            run.baseline(rt)
        rows = rt.trace.trials(rt.run_id, level=1)
        assert rows and all(r["status"] == VOID for r in rows)
        assert "pinned evaluator" in rows[0]["outcome"]["info"]["error"]


def test_status_names_the_embedded_model() -> None:
    from recur.core.report_tables import model_label

    assert model_label("offline") == "offline: SmolLM2-135M-Instruct, embedded, run by llama.cpp"
    assert model_label("openai/gpt-4o-mini") == "openai/gpt-4o-mini"
