"""A non-editable install works too: the wheel carries every prompt and task file, and a run works from it."""
from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"levels": "recur/levels", "tasks/gpt_pretrain": "recur/tasks/gpt_pretrain", "tasks/synthetic": "recur/tasks/synthetic",
          "mechanism_store/builtin": "recur/mechanism_store/builtin", "core": "recur/core", "meta_meta": "recur/meta_meta",
          "evidence": "recur/evidence"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (found,) = out.glob("recur-*.whl")
    return found


def test_the_wheel_carries_every_runtime_file_and_entry_point(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, target in MAPPED.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".md"):
                assert f"{target}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    (entry,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for needed in ("recur = recur.core.cli:main", "gpt_pretrain", "synthetic", "run =", "mech =", "report =", "ablate ="):
        assert needed in text


def test_a_run_works_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    # -S: no .pth files, so the editable install of the checkout is invisible; dependencies come from site-packages
    code = ("import sys; sys.path[:0] = [sys.argv[1], *sys.argv[2].split('|')]; import recur; "
            "assert recur.__file__.startswith(sys.argv[1]), recur.__file__; from recur.core.cli import main; "
            "sys.exit(main(['run', '--task', 'synthetic', '--model', 'scripted', '--max-trials', '4']))")
    run = subprocess.run([sys.executable, "-S", "-c", code, str(target), "|".join(site.getsitepackages())], cwd=work,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (work / ".recur" / "trace.db").exists() and "4 level-1 trials" in run.stdout


# what each folder may import from the others: core is the base; the loops never import the evidence tools.
# A CLI module composes commands and may reach anywhere (`recur mech eval` lives in the store's command group).
CLI_FILES = {"mechanism_store/cli.py"}
FORBIDDEN = {"core": ("recur.levels", "recur.evidence", "recur.mechanism_store", "recur.meta_meta", "recur.tasks"),
             "levels": ("recur.evidence",), "mechanism_store": ("recur.evidence",), "meta_meta": ("recur.evidence",)}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_the_layout_shows_the_design(folder: str) -> None:
    import ast

    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in CLI_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                    if n.startswith(FORBIDDEN[folder])]
    assert not bad, bad


def test_torch_is_a_range_for_the_package_and_the_tested_cpu_pin_for_readme_and_ci() -> None:
    """A GPU user's CUDA torch must satisfy the package (issue: pip replaced it with the CPU pin), while README's
    two commands and CI still install exactly the CPU wheel the suite is tested with."""
    import re
    import tomllib

    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [Requirement(d) for d in deps if Requirement(d).name == "torch"]
    assert torch.specifier.contains("2.13.0") and torch.specifier.contains("2.6.0")  # a CUDA 2.6 build stays
    assert not torch.specifier.contains("2.3.0") and not torch.specifier.contains("3.0.0")
    pins = [Requirement(line) for line in (ROOT / "cpu-constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert [(p.name, str(p.specifier)) for p in pins] == [("torch", "==2.13.0"), ("llama-cpp-python", "==0.3.16")]
    (llama,) = [Requirement(d) for d in deps if Requirement(d).name == "llama-cpp-python"]
    assert llama.specifier.contains("0.3.16")  # the tested build is one the package accepts
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.M)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert len(commands) == 2 and len(ci) == 1
    for command in commands + ci:
        assert "pip install -c cpu-constraints.txt -e " in command
    assert ci[0] in commands[1]  # CI runs README's test command exactly
