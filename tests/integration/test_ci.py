"""CI: keys and step outputs, prune modes with real pip, and the GitHub Action itself.

The action is checked twice: by actionlint (its steps, turned into a reusable
workflow, and a workflow that uses it), and by running its steps with bash the
way the runner does, with actions/cache emulated by a directory of saved keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import PYTHON_VERSIONS
from helpers import install, installed_version, pipfresh
from pipfresh.cache import usage
from pipfresh.ci import keys, outputs
from pipfresh.layout import CacheRoot
from pipfresh.target import interpreter
from pipfresh.testing.dists import build_sdist, build_wheel

REPO = Path(__file__).resolve().parents[2]
SAFE = re.compile(r"[A-Za-z0-9._-]+")


# -- keys and outputs -----------------------------------------------------------------


def test_pre_release_key_carries_the_build_string(tmp_path: Path) -> None:
    facts = interpreter.probe(Path(sys.executable), None)
    final = keys.for_target(facts, [], tmp_path)
    alpha = dataclasses.replace(
        facts,
        version_info=(3, 15, 0, "alpha", 2),
        version="3.15.0a2+ (heads/main:0a1b2c3, Nov 20 2026, 10:00:00) [GCC 14.2.0]",
    )
    rebuilt = dataclasses.replace(alpha, version=alpha.version.replace("0a1b2c3", "9f8e7d6"))
    first, second = keys.for_target(alpha, [], tmp_path), keys.for_target(rebuilt, [], tmp_path)
    for key in (final, first, second):
        assert SAFE.fullmatch(key.key) and key.key.startswith(key.restore_prefix)
    assert "heads_main_0a1b2c3_Nov_20_2026_10_00_00_GCC_14.2.0" in first.restore_prefix
    assert first.restore_prefix != second.restore_prefix  # another build never restores it
    assert "GCC" not in final.restore_prefix and len(first.key) < 512


def test_cache_key_on_github_writes_outputs_and_dotenv(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "requirements").mkdir(parents=True)
    for name in ("requirements.txt", "requirements/dev.txt", "constraints.txt", "tox.ini"):
        (project / name).write_text(f"# {name}\n")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "pylock.toml").write_text("lock-version = '1.0'\n")
    (project / "README.md").write_text("not a dependency file\n")
    github, dotenv = tmp_path / "github_output", tmp_path / "build.env"
    github.write_text("earlier=kept\n")
    env = dict(os.environ, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(github))

    run = pipfresh("cache", "key", "--json", "--dotenv", dotenv, cwd=project, env=env).ok()
    printed = json.loads(run.stdout)
    assert printed["files"] == [
        "constraints.txt",
        "pylock.toml",
        "pyproject.toml",
        "requirements.txt",
        "requirements/dev.txt",
        "tox.ini",
    ]
    written = dict(line.split("=", 1) for line in github.read_text().splitlines())
    assert written["earlier"] == "kept"  # appended, never truncated
    assert written["key"] == printed["key"] and written["restore-key"] == printed["restore-key"]
    assert written["dir"].endswith(f"partitions-v1/{written['partition']}")
    assert written["state"] == "empty"
    assert SAFE.fullmatch(written["key"]) and written["key"].startswith(written["restore-key"])
    lines = dotenv.read_text().splitlines()
    assert f"PIPFRESH_KEY={printed['key']}" in lines
    assert f"PIPFRESH_RESTORE_KEY={printed['restore-key']}" in lines

    (project / "requirements" / "dev.txt").write_text("changed\n")
    again = json.loads(pipfresh("cache", "key", "--json", cwd=project, env=env).ok().stdout)
    assert again["key"] != printed["key"] and again["restore-key"] == printed["restore-key"]


def test_multiline_output_gets_a_delimiter_it_does_not_contain() -> None:
    text = outputs.github_lines({"one": "1", "many": "a\nb"})
    head, body = text.split("\n", 1)
    assert head == "one=1"
    start, value_a, value_b, end = body.splitlines()
    assert start.startswith("many<<") and end == start[len("many<<") :] and end not in "a\nb"
    assert (value_a, value_b) == ("a", "b")


# -- prune modes with real pip ------------------------------------------------------------


def prune_json(venv: Any, *args: str) -> dict[str, Any]:
    out = json.loads(
        pipfresh("cache", "prune", "--python", venv.python, "--json", *args).ok().stdout
    )
    (result,) = out.values()
    return dict(result)


def partition_of(venv: Any) -> Path:
    return Path(pipfresh("cache", "dir", "--python", venv.python).ok().stdout.strip())


def test_recent_mode_keeps_what_the_last_runs_used(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_sdist(dist_dir, "native", "0.1"),
    )
    first = make_venv(py311)
    install(first, "app", "native", index=index).ok()
    index.publish(build_wheel(dist_dir, "lib", "2.0"))  # a release between two CI runs
    second = make_venv(py311)
    install(second, "app", "native", index=index).ok()
    assert installed_version(second.python, "lib") == "2.0"
    partition = partition_of(second)
    record = usage.load(CacheRoot(partition.parents[1]).partition(partition.name))
    assert record.runs == 2

    pip_cache = partition / "pip"
    lib1 = index.file_url("lib-1.0-py3-none-any.whl")
    lib2 = index.file_url("lib-2.0-py3-none-any.whl")
    assert (pip_cache / f"{httpcache_rel(pip_cache, lib1)}.body").exists()

    # The last 2 runs used everything; the last one did not use lib 1.0.
    removed = prune_json(second, "--mode", "recent", "--keep-runs", "2")["removed"]
    # Every wheel is in the store, which installs it: the downloads go (pip 26.3 reads none
    # in a dry run); the sdist stays (pip builds its metadata from it).
    assert "unused" not in removed and removed["stored"] == 3, removed
    assert not (pip_cache / f"{httpcache_rel(pip_cache, lib2)}.body").exists()
    removed = prune_json(second, "--mode", "recent", "--keep-runs", "1")["removed"]
    assert removed["unused"] >= 1  # lib 1.0's store entry
    assert not (pip_cache / f"{httpcache_rel(pip_cache, lib1)}.body").exists()
    assert list(pip_cache.glob("wheels/**/native-0.1-*.whl"))

    index.reset_counters()
    third = make_venv(py311)
    install(third, "app", "native", index=index).ok()
    counters = index.counters()
    assert counters.file_requests == 0, counters.downloads  # nothing fetched, nothing built
    assert installed_version(third.python, "native") == "0.1"


def test_size_cap_evicts_the_least_recently_used_first(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path
) -> None:
    filler = {"old/data.bin": os.urandom(200_000).hex()}  # incompressible, so sizes are real
    index.publish(
        build_wheel(dist_dir, "old", "1.0", modules=filler),
        build_wheel(dist_dir, "new", "1.0"),
    )
    venv = make_venv(py311)
    # pip's entries only (the store is evicted first: tests/integration/test_prune_store.py)
    env = {**os.environ, "PIPFRESH_INSTALLER": "pip"}
    for name in ("old", "new"):  # "new" used later than "old"
        install(venv, name, env=env, index=index).ok()
    partition = partition_of(venv)
    prune_json(venv, "--mode", "valid")  # leave only files, so sizes are exact
    pip_cache = partition / "pip"
    entries = {
        rel: sum(p.stat().st_size for p in (pip_cache / rel).parent.glob(f"{Path(rel).name}*"))
        for rel in usage.load(CacheRoot(partition.parents[1]).partition(partition.name)).entries
    }
    total = sum(entries.values())
    old_wheel = httpcache_rel(pip_cache, index.file_url("old-1.0-py3-none-any.whl"))
    assert entries[old_wheel] == max(entries.values()) > 100_000

    result = prune_json(venv, "--max-size", str(total - 1))  # --max-size implies --mode size
    assert result["removed"] == {"over-size-cap": 1}
    assert not (pip_cache / f"{old_wheel}.body").exists()
    new_wheel = httpcache_rel(pip_cache, index.file_url("new-1.0-py3-none-any.whl"))
    assert (pip_cache / f"{new_wheel}.body").exists()

    result = prune_json(venv, "--mode", "size", "--max-size", "0")
    assert result["removed"]["over-size-cap"] == sum(1 for size in entries.values() if size) - 1
    assert outputs.state(CacheRoot(partition.parents[1]).partition(partition.name)) == "empty"


def test_recent_mode_without_a_record_keeps_everything(tmp_path: Path, dist_dir: Path) -> None:
    """A cache made before runs were recorded (or by plain pip) is not emptied."""
    partition = Path(pipfresh("cache", "dir").ok().stdout.strip())
    built = partition / "pip" / "wheels" / "ab" / "cd" / "ef" / "0123"
    built.mkdir(parents=True)
    shutil.copy(build_wheel(dist_dir, "native", "0.1"), built)
    (partition / "pipfresh").mkdir(parents=True)
    out = json.loads(pipfresh("cache", "prune", "--mode", "recent", "--json").ok().stdout)
    assert out[partition.name]["removed"] == {} and list(built.iterdir())

    (partition / "pipfresh" / "usage-v1.json").write_text('{"runs": 3, "entries": {}}')
    out = json.loads(pipfresh("cache", "prune", "--json").ok().stdout)  # recent is the default
    assert out[partition.name]["removed"] == {"unused": 1} and not built.exists()


@pytest.mark.parametrize(
    ("text", "size"),
    [("500M", 500_000_000), ("2G", 2_000_000_000), ("1.5GB", 1_500_000_000), ("800k", 800_000)],
)
def test_max_size_reads_like_people_write_it(text: str, size: int) -> None:
    from pipfresh.cache.prune import parse_size

    assert parse_size(text) == size


def test_bad_max_size_is_a_one_line_error() -> None:
    run = pipfresh("cache", "prune", "--max-size", "lots")
    assert (
        run.code == 2
        and run.stderr.strip() == "pipfresh: error: not a size: 'lots' (e.g. 500M, 2G)"
    )


def httpcache_rel(pip_cache: Path, url: str) -> str:
    from pipfresh.pip import httpcache

    return httpcache.entry_path(pip_cache / "http-v2", url).relative_to(pip_cache).as_posix()


# -- the GitHub Action --------------------------------------------------------------------

actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
    "actionlint"
)
needs_actionlint = pytest.mark.skipif(actionlint is None, reason="actionlint is not installed")


def lint_project(tmp_path: Path, use_inputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A repository with the action at its root, a workflow that uses it, and the action's
    steps as a reusable workflow (actionlint checks workflows, with shellcheck if found)."""
    import yaml

    project = tmp_path / "lint"
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    shutil.copy(REPO / "action.yml", project / "action.yml")
    action = yaml.safe_load((REPO / "action.yml").read_text())
    as_workflow = {
        "name": "the action's steps",
        "on": {
            "workflow_call": {
                "inputs": {
                    name: {"type": "string", "required": False, "default": spec["default"]}
                    for name, spec in action["inputs"].items()
                },
                "outputs": {
                    name: {"value": f"${{{{ jobs.run.outputs.{name} }}}}"}
                    for name in action["outputs"]
                },
            }
        },
        "jobs": {
            "run": {
                "runs-on": "ubuntu-latest",
                "outputs": {name: spec["value"] for name, spec in action["outputs"].items()},
                "steps": action["runs"]["steps"],
            }
        },
    }
    (workflows / "steps.yml").write_text(yaml.safe_dump(as_workflow, sort_keys=False))
    use = {
        "name": "use",
        "on": "push",
        "jobs": {
            "test": {
                "runs-on": "ubuntu-latest",
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    {"id": "deps", "uses": "./", "with": use_inputs},
                    {
                        "run": 'echo "${{ steps.deps.outputs.cache-hit }} ${{ steps.deps.outputs.summary }}"'
                    },
                ],
            }
        },
    }
    (workflows / "use.yml").write_text(yaml.safe_dump(use, sort_keys=False))
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    assert actionlint is not None
    return subprocess.run(
        [actionlint, "-oneline"], cwd=project, env=env, capture_output=True, text=True
    )


@needs_actionlint
def test_actionlint_passes_on_the_action(tmp_path: Path) -> None:
    proc = lint_project(tmp_path, {"requirements": "requirements.txt", "prune": "recent"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_actionlint
def test_actionlint_reads_the_action_inputs(tmp_path: Path) -> None:
    """The check has teeth: an input the action does not declare is an error."""
    proc = lint_project(tmp_path, {"requirement": "requirements.txt"})
    assert proc.returncode == 1 and '"requirement" is not defined' in proc.stdout


WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


@needs_actionlint
def test_actionlint_passes_on_the_projects_workflow() -> None:
    """``.github/workflows/ci.yml``, its run: scripts (shellcheck) and its ``uses: ./``
    (checked against action.yml's inputs)."""
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    assert actionlint is not None
    proc = subprocess.run(
        [actionlint, "-oneline", str(WORKFLOW)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_workflow_tests_every_supported_python_on_every_os_and_uses_the_action() -> None:
    import yaml
    from packaging.specifiers import SpecifierSet

    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    matrix = jobs["tests"]["strategy"]["matrix"]
    supported = SpecifierSet(_requires_python())
    assert matrix["python"] == [v for v in PYTHON_VERSIONS if supported.contains(f"{v}.0")]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    readme_command = jobs["tests"]["steps"][-1]["run"].splitlines()[-2:]
    assert readme_command == ["python -m pip install -e '.[test]'", "python -m pytest -n 2"]
    assert any(step.get("uses") == "./" for step in jobs["action"]["steps"])
    lint = "\n".join(step.get("run", "") for step in jobs["lint"]["steps"])
    assert all(tool in lint for tool in ("ruff check", "mypy", "actionlint"))


def _requires_python() -> str:
    match = re.search(r'^requires-python = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match is not None
    return match.group(1)


class ActionRunner:
    """Runs action.yml's steps as GitHub's runner does (bash, output files, expressions);
    actions/cache restore and save work on ``store``, newest save last."""

    EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        import yaml

        self.action = yaml.safe_load((REPO / "action.yml").read_text())
        self.tmp = tmp_path
        self.base_env = env
        self.store: dict[str, Path] = {}
        self.jobs = 0

    def run(self, inputs: dict[str, str]) -> dict[str, str]:
        """One CI job on a fresh runner: a new temp dir and cache root; returns the outputs."""
        self.jobs += 1
        job = self.tmp / f"job{self.jobs}"
        temp = job / "runner-temp"
        tool_bin = temp / "pipfresh-tool" / "bin"
        tool_bin.mkdir(parents=True)
        (tool_bin / "python").symlink_to(sys.executable)  # pipfresh already set up
        (tool_bin / "pipfresh").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pipfresh "$@"\n')
        (tool_bin / "pipfresh").chmod(0o755)
        defaults = {
            name: str(spec.get("default", "")) for name, spec in self.action["inputs"].items()
        }
        self.inputs = {**defaults, "cache-dir": str(job / "pipfresh-cache"), **inputs}
        self.steps: dict[str, dict[str, str]] = {}
        self.job_env: dict[str, str] = {}
        for step in self.action["runs"]["steps"]:
            if "if" in step and not self.condition(step["if"]):
                continue
            if "uses" in step:
                outputs = self.cache_action(
                    step["uses"], {k: self.expand(v) for k, v in step["with"].items()}
                )
            else:
                outputs = self.shell(step, temp, job)
            self.steps[step["id"]] = outputs
        return {name: self.expand(spec["value"]) for name, spec in self.action["outputs"].items()}

    def value(self, expr: str) -> str:
        for alternative in expr.split("||"):
            ctx, _, rest = alternative.strip().partition(".")
            if ctx == "inputs":
                found = self.inputs.get(rest, "")
            elif ctx == "steps":
                step, _, name = rest.partition(".outputs.")
                found = self.steps.get(step, {}).get(name, "")
            elif ctx == "env":
                found = self.job_env.get(rest, "")
            else:
                raise AssertionError(f"expression the test runner does not know: {expr}")
            if found:
                return found
        return ""

    def expand(self, text: str) -> str:
        return self.EXPR.sub(lambda m: self.value(m.group(1)), str(text))

    def condition(self, expr: str) -> bool:
        match = re.fullmatch(r"(\S+) (==|!=) '(.*)'", expr.strip())
        assert match is not None, expr
        left, op, right = match.groups()
        return (self.value(left) == right) == (op == "==")

    def shell(self, step: dict[str, Any], temp: Path, job: Path) -> dict[str, str]:
        files = {name: job / f"{step['id']}.{name}" for name in ("output", "env", "path")}
        for path in files.values():
            path.write_text("")
        env = {
            **self.base_env,
            **self.job_env,
            "GITHUB_ACTIONS": "true",
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(temp),
            "GITHUB_ACTION_PATH": str(REPO),
            "GITHUB_OUTPUT": str(files["output"]),
            "GITHUB_ENV": str(files["env"]),
            "GITHUB_PATH": str(files["path"]),
            **{k: self.expand(v) for k, v in step.get("env", {}).items()},
        }
        script = job / f"{step['id']}.sh"
        script.write_text(step["run"])
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            env=env,
            cwd=self.base_env["TEST_WORKSPACE"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"step {step['id']}:\n{proc.stdout}\n{proc.stderr}"
        self.job_env.update(parse_outputs(files["env"].read_text()))
        return parse_outputs(files["output"].read_text())

    def cache_action(self, uses: str, given: dict[str, str]) -> dict[str, str]:
        path = Path(given["path"])
        if uses == "actions/cache/restore@v4":
            matched = given["key"] if given["key"] in self.store else None
            if matched is None:
                prefixed = [k for k in self.store if k.startswith(given.get("restore-keys", "\0"))]
                matched = prefixed[-1] if prefixed else None
            if matched is None:
                return {"cache-hit": ""}
            shutil.copytree(self.store[matched], path, symlinks=True)
            return {"cache-hit": str(matched == given["key"]).lower(), "cache-matched-key": matched}
        assert uses == "actions/cache/save@v4", uses
        assert given["key"] not in self.store, "a CI cache key is immutable: saving it again fails"
        saved = self.tmp / "store" / given["key"]
        shutil.copytree(path, saved, symlinks=True)
        self.store[given["key"]] = saved
        return {}


def parse_outputs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            for more in lines:
                if more == delimiter:
                    break
                value.append(more)
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value_ = line.split("=", 1)
            out[name] = value_
    return out


def test_the_action_restores_within_the_partition_and_saves_only_changes(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "app", "1.0", requires=["lib"]),
        build_wheel(dist_dir, "lib", "1.0"),
        build_wheel(dist_dir, "extra", "1.0"),
        build_sdist(dist_dir, "native", "0.1"),
    )
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "requirements.txt").write_text("app\nnative\n")
    env = dict(
        os.environ,
        PIP_INDEX_URL=index.index_url,
        PIP_TRUSTED_HOST=index.host,
        TEST_WORKSPACE=str(workspace),
    )
    runner = ActionRunner(tmp_path, env)

    def job(**inputs: str) -> tuple[dict[str, str], Any]:
        venv = make_venv(py311)
        index.reset_counters()
        outputs = runner.run(
            {"python": str(venv.python), "requirements": "requirements.txt", **inputs}
        )
        return outputs, index.counters()

    first, counters = job()
    assert first["cache-hit"] == "" and first["saved"] == "true"
    assert json.loads(first["summary"])["installed"] == 3 and counters.file_requests >= 3
    assert first["cache-key"].startswith(f"pipfresh-1-{keys.os_name()}-cp311-")

    second, counters = job()  # same requirements: exact hit, nothing fetched, nothing saved
    assert second["cache-hit"] == "true" and second["saved"] == "false"
    assert second["cache-key"] == first["cache-key"] and counters.file_requests == 0
    reason = json.loads(second["summary"])["installer_reason"]
    # their downloads were pruned: not needed
    assert reason.startswith("3 from the store") and reason.endswith(", 0 added"), reason

    (workspace / "requirements.txt").write_text("app\nnative\nextra\n")
    third, counters = job(**{"pip-args": "--no-compile 'extra>=1'"})
    assert third["cache-hit"] == "false" and third["saved"] == "true"  # restored by prefix
    # --no-compile is plain pip's: it reads the wheels whose downloads the store made
    # redundant, and fetches them once; its job keeps them (its last run was pip's).
    assert counters.downloads == {
        "extra-1.0-py3-none-any.whl": 1,
        "app-1.0-py3-none-any.whl": 1,
        "lib-1.0-py3-none-any.whl": 1,
    }, counters.downloads
    assert list(runner.store) == [first["cache-key"], third["cache-key"]]
    assert third["cache-key"].startswith(third_prefix := first["cache-key"][:-20])
    assert runner.store and all(key.startswith(third_prefix) for key in runner.store)

    # A key file changes, what gets installed does not: restored by prefix, nothing saved.
    (workspace / "tox.ini").write_text("[tox]\nenv_list = py\n")
    fourth, counters = job(**{"pip-args": "--no-compile 'extra>=1'"})
    assert fourth["cache-key"] not in runner.store and fourth["cache-hit"] == "false"
    assert fourth["saved"] == "false" and counters.file_requests == 0

    # Back to the store installer: nothing fetched; the downloads it does not need go.
    fifth, counters = job(**{"pip-args": "extra"})
    assert fifth["saved"] == "true" and counters.file_requests == 0
