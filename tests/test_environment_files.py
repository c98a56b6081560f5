"""Conda and Binder files, checked offline: they parse, list what pyproject.toml needs, and
binder/postBuild and binder/start do what they say (run with a stand-in `python`)."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
#: pip name -> conda-forge names that provide it, per file (Binder wants CPU-only PyTorch
#: and matplotlib without Qt).
CONDA_NAMES = {
    "environment.yml": {"torch": {"pytorch"}, "matplotlib": {"matplotlib", "matplotlib-base"}},
    "binder/environment.yml": {"torch": {"pytorch-cpu"}, "matplotlib": {"matplotlib", "matplotlib-base"}},
}
#: Which parts of pyproject.toml each file must cover.
NEEDS = {"environment.yml": ("dependencies", "lab", "dev"), "binder/environment.yml": ("dependencies", "lab")}
SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(?:(==|>=|<=|=|>|<|~=|!=)\s*([0-9][^\s,]*))?")


def pyproject_requirements(part: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] if part == "dependencies" else project["optional-dependencies"][part]
    return [Requirement(r) for r in names]


def conda_specs(relpath: str) -> dict[str, tuple[str | None, str | None]]:
    """name -> (operator, version) of the conda packages, pip section left out."""
    env = yaml.safe_load((ROOT / relpath).read_text())
    specs = {}
    for entry in env["dependencies"]:
        if isinstance(entry, str):
            match = SPEC.match(entry)
            assert match, f"{relpath}: cannot read the spec {entry!r}"
            specs[match.group(1).lower()] = (match.group(2), match.group(3))
    return specs


def pip_section(relpath: str) -> list[str]:
    env = yaml.safe_load((ROOT / relpath).read_text())
    return [line for e in env["dependencies"] if isinstance(e, dict) for line in e.get("pip", [])]


@pytest.mark.parametrize("relpath", NEEDS)
def test_environment_parses_and_uses_conda_forge_only(relpath):
    env = yaml.safe_load((ROOT / relpath).read_text())
    assert set(env) >= {"name", "channels", "dependencies"}
    assert env["channels"] == ["conda-forge", "nodefaults"]


@pytest.mark.parametrize("relpath", NEEDS)
def test_environment_lists_what_pyproject_needs(relpath):
    specs = conda_specs(relpath)
    from_pip = {Requirement(line).name.lower() for line in pip_section(relpath) if not line.startswith("-")}
    missing, too_old = [], []
    for part in NEEDS[relpath]:
        for req in pyproject_requirements(part):
            names = CONDA_NAMES[relpath].get(req.name.lower(), {req.name.lower()})
            found = names & set(specs)
            if not found and req.name.lower() not in from_pip:  # not on conda-forge: pip section
                missing.append(f"{req} (conda: {' or '.join(sorted(names))})")
            if not found:
                continue
            op, version = specs[found.pop()]
            floor = [Version(s.version) for s in req.specifier if s.operator == ">="]
            if op in (">=", "=", "==") and floor and Version(version) < floor[0]:
                too_old.append(f"{req}: {relpath} allows {op}{version}")
    assert missing == [], f"{relpath} lacks packages that pyproject.toml needs"
    assert too_old == [], f"{relpath} allows versions that pyproject.toml excludes"


@pytest.mark.parametrize("relpath", NEEDS)
def test_environment_python_satisfies_requires_python(relpath):
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    op, version = conda_specs(relpath)["python"]
    assert op in ("=", "==", ">=") and Requirement(f"python{requires}").specifier.contains(version)


def test_binder_is_runtime_only_with_cpu_pytorch():
    specs = conda_specs("binder/environment.yml")
    dev_only = {r.name.lower() for r in pyproject_requirements("dev")} - {"nbformat", "nbclient"}
    assert sorted(dev_only & set(specs)) == []
    assert "pytorch" not in specs, "Binder has no GPU: use pytorch-cpu, not the CUDA-capable pytorch"
    # repo2docker builds the environment before copying the repository: lrtools comes from postBuild.
    assert pip_section("binder/environment.yml") == []
    assert pip_section("environment.yml")[0] == "-e ."


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_binder_scripts_are_executable_bash_that_stop_on_error(name):
    path = BINDER / name
    assert path.stat().st_mode & stat.S_IXUSR, f"chmod +x binder/{name}"
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert path.read_text().startswith("#!/bin/bash\n")
    if name == "postBuild":
        assert re.fullmatch(r"set -[a-z]*e[a-z]*( (-o )?pipefail)?", lines[0]), "start with `set -e`"
    subprocess.run(["bash", "-n", str(path)], check=True)


def _shim(tmp_path: Path, rc: int) -> dict[str, str]:
    """A PATH whose `python` logs its arguments (one call per line) and exits with ``rc``."""
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/bash\n{{ printf "%q " "$@"; echo; }} >> "{tmp_path}/calls.log"\nexit {rc}\n')
    shim.chmod(0o755)
    # NB_PYTHON_PREFIX: repo2docker's environment, where postBuild installs JupyterLab's overrides.
    return {**os.environ, "PATH": f"{shim.parent}:/usr/bin:/bin",
            "NB_PYTHON_PREFIX": str(tmp_path / "prefix")}


def test_postbuild_installs_lrtools_then_fetches_mnist(tmp_path):
    subprocess.run([str(BINDER / "postBuild")], cwd=tmp_path, env=_shim(tmp_path, 0), check=True)
    calls = [shlex.split(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert calls[0][:3] == ["-m", "pip", "install"] and calls[0][-2:] == ["-e", "."]
    assert "--no-deps" in calls[0], "pip must not replace conda's CPU-only PyTorch"
    fetch = [c for c in calls if "ensure_mnist" in " ".join(c)]
    assert len(fetch) == 1 and fetch[0][0] == "-c" and "resolve_data_root('data')" in fetch[0][1]


def test_postbuild_fetch_command_works(tmp_path, mnist_root):
    """The exact `python -c` that postBuild runs, against ./data holding an MNIST copy."""
    subprocess.run([str(BINDER / "postBuild")], cwd=tmp_path, env=_shim(tmp_path, 0), check=True)
    calls = [shlex.split(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    code = next(c for c in calls if "ensure_mnist" in " ".join(c))
    (tmp_path / "data").symlink_to(Path(mnist_root).resolve(), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "LRTOOLS_DATA"}
    out = subprocess.run([sys.executable, *code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == "MNIST ready in data/MNIST/raw\n"


def test_postbuild_stops_at_the_first_failure(tmp_path):
    done = subprocess.run([str(BINDER / "postBuild")], cwd=tmp_path, env=_shim(tmp_path, 3))
    assert done.returncode == 3
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1


@pytest.mark.parametrize(("preset", "expected"), [(None, "/home/jovyan/data"), ("/mnt/mnist", "/mnt/mnist")])
def test_start_points_lrtools_at_the_repository_data(preset, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("LRTOOLS_DATA", "REPO_DIR")}
    env |= {"HOME": "/home/jovyan"} | ({"LRTOOLS_DATA": preset} if preset else {})
    done = subprocess.run([str(BINDER / "start"), "bash", "-c", 'echo "$LRTOOLS_DATA"; exit 7'],
                          env=env, capture_output=True, text=True)
    assert (done.stdout, done.returncode) == (expected + "\n", 7)


OVERRIDES = BINDER / "overrides.json"


def test_postbuild_installs_the_jupyterlab_overrides(tmp_path):
    subprocess.run([str(BINDER / "postBuild")], cwd=tmp_path, env=_shim(tmp_path, 0), check=True)
    installed = tmp_path / "prefix" / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.read_bytes() == OVERRIDES.read_bytes()


def test_overrides_switch_off_the_news_prompt_with_settings_jupyterlab_knows():
    """Names and values checked against the installed JupyterLab's own schema."""
    import json

    overrides = json.loads(OVERRIDES.read_text())
    assert overrides == {"@jupyterlab/apputils-extension:notification":
                         {"fetchNews": "false", "checkForUpdates": False}}
    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    if not schemas.is_dir():
        pytest.skip(f"no JupyterLab schemas in {schemas}")
    for plugin_id, values in overrides.items():
        package, plugin = plugin_id.rsplit(":", 1)
        schema = json.loads((schemas / package / f"{plugin}.json").read_text())
        for name, value in values.items():
            spec = schema["properties"][name]
            allowed = [choice["const"] for choice in spec.get("oneOf", [])]
            assert {"string": str, "boolean": bool}[spec["type"]] is type(value), name
            assert not allowed or value in allowed, f"{name}={value!r} not in {allowed}"


def test_make_lab_installs_the_same_overrides_and_opens_the_first_notebook():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "-B", "lab", "VENV=/nonexistent-venv"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert ("install -D -m 644 binder/overrides.json "
            "/nonexistent-venv/share/jupyter/lab/settings/overrides.json") in dry
    lab = [line for line in dry.splitlines() if "/bin/jupyter lab" in line]
    assert len(lab) == 1 and "--LabApp.default_url=/lab/tree/00_setup_and_baseline.ipynb" in lab[0]
    assert "--ServerApp.root_dir=notebooks" in lab[0]
