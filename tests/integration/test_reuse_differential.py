"""The reuse rule against pip itself: whenever ``Recorded.survives`` says a changed index
leaves the recorded resolution standing, pip's real dry run on the changed index gives
the same install list (names, versions, URLs, hashes).

Random small indexes (three projects, a few versions, pre-releases, dependencies),
random requirements (pinned, ranged, bare, extras, markers) and constraints, ``--pre``
sometimes, then a random change: a release, a new wheel of a version, a yank, a file
for another Python.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import MakeVenv
from helpers import Venv
from pipfresh.resolve import candidates, pagelog, reuse
from pipfresh.resolve.revalidate import Revalidator
from pipfresh.testing.dists import build_wheel
from pipfresh.testing.index import PackageIndex

PROJECTS = ("alpha", "beta", "gamma")
VERSIONS = ("1.0", "1.1", "2.0", "2.1rc1")
RELEASES = ("3.0", "1.0.0", "1.0+local", "2.2rc1", "1.1")  # what a change publishes
_DEPS = ("", ">=1", "<3", ">=1.0,<2")


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    published = {p: sorted({"1.0", *draw(st.sets(st.sampled_from(VERSIONS)))}) for p in PROJECTS}
    deps = {
        "alpha": "beta" + draw(st.sampled_from(_DEPS)),
        "beta": "gamma" + draw(st.sampled_from(_DEPS)),
    }
    requirements = []
    for project in PROJECTS:
        version = draw(st.sampled_from(published[project]))
        kinds = ["", "pin", "pin", "pin", "pin", "range", "extra", "marker", "none"]
        kind = draw(st.sampled_from(kinds))
        spelled = {
            "": project,
            "pin": f"{project}=={version}",
            "range": f"{project}>=1.1",
            "extra": f"{project}[x]=={version}",
            "marker": f"{project}=={version}; python_version >= '3'",
        }
        if kind in spelled:
            requirements.append(spelled[kind])
    constraint = draw(st.sampled_from([None, *PROJECTS]))
    pinned = draw(st.sampled_from(published[constraint])) if constraint else None
    change = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["release", "release", "release", "wheel", "yank", "python"]),
                st.sampled_from(PROJECTS),
                st.sampled_from(RELEASES + VERSIONS),
            ),
            min_size=1,
            max_size=2,
        )
    )
    return {
        "published": published,
        "deps": deps,
        "requirements": requirements or ["alpha"],
        "constraint": f"{constraint}=={pinned}" if constraint else None,
        "pre": draw(st.booleans()),
        "change": change,
    }


def _wheel(out: Path, project: str, version: str, deps: dict[str, str], **kw: Any) -> Path:
    requires = [deps[project]] if project in deps else []
    return build_wheel(out, project, version, requires=requires, extras=["x"], **kw)


def _dry_run(venv: Venv, index: PackageIndex, args: list[str], work: Path) -> tuple[Any, list[str]]:
    report, log = work / "report.json", work / "pip.log"
    for path in (report, log):
        path.unlink(missing_ok=True)
    proc = venv.pip(
        "install", "--dry-run", "--no-cache-dir", "--report", report, "--log", log,
        "--index-url", index.index_url, "--disable-pip-version-check", *args, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        return None, []
    pages = pagelog.fetched_pages(log.read_text())
    items = json.loads(report.read_text())["install"]
    listed = [
        (i["metadata"]["name"], i["metadata"]["version"], i["download_info"]["url"],
         json.dumps(i["download_info"].get("archive_info"), sort_keys=True))
        for i in items
    ]  # fmt: skip
    return sorted(listed), pages


def _read(url: str) -> tuple[pagelog.Page, bytes | None, str]:
    request = urllib.request.Request(url, headers={"Accept": candidates.JSON_V1})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            body, headers = response.read(), response.headers
    except OSError:
        return pagelog.Page(url, missing=True), None, ""
    return pagelog.Page(url, etag=headers.get("ETag")), body, headers.get("Content-Type", "")


def _apply(index: PackageIndex, out: Path, scenario: dict[str, Any]) -> None:
    deps, published = scenario["deps"], scenario["published"]
    for n, (what, project, version) in enumerate(scenario["change"]):
        where = out / f"change{n}"
        where.mkdir()
        if what == "release":
            index.publish(_wheel(where, project, version, deps))
        elif what == "wheel":
            index.publish(_wheel(where, project, version, deps, tag="py311-none-any"))
        elif what == "python":
            index.publish(_wheel(where, project, version, deps, requires_python=">=3.99"))
        elif version in published[project]:
            index.yank(f"{project}-{version}-py3-none-any.whl")


@pytest.fixture
def venv(make_venv: MakeVenv, py311: Path) -> Venv:
    """One venv for every example (fixtures are made once per test; a dry run leaves
    the venv as it is)."""
    return make_venv(py311, pip="26.3", name="differential")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_whenever_the_rule_keeps_a_resolution_pip_agrees(
    scenario: dict[str, Any], venv: Venv
) -> None:
    with tempfile.TemporaryDirectory() as tmp, PackageIndex(Path(tmp, "index")) as index:
        work = Path(tmp)
        for project, versions in scenario["published"].items():
            for version in versions:
                index.publish(_wheel(work, project, version, scenario["deps"]))
        args = list(scenario["requirements"])
        if scenario["constraint"]:
            (work / "c.txt").write_text(scenario["constraint"] + "\n")
            args += ["-c", str(work / "c.txt")]
        if scenario["pre"]:
            args.append("--pre")
        before, urls = _dry_run(venv, index, args, work)
        if before is None:
            event("unresolvable")
            return  # nothing resolves: nothing to reuse
        pins = candidates.root_pins(["install", *args], {})
        read = [_read(url) for url in urls]
        offers = {
            page.url: reuse.Offer.of(page.url, body, media, pins) for page, body, media in read
        }
        recorded = reuse.Recorded([page for page, _, _ in read], {}, {}, offers)
        _apply(index, work, scenario)
        changes = Revalidator([], {}).check(recorded.pages)
        why, _outside = recorded.survives(changes)
        if why is not None:
            event("pip resolves")
            return
        event(f"kept, {len(changes)} page(s) changed")  # pip resolves: nothing claimed
        after, _ = _dry_run(venv, index, args, work)
        assert after == before, (scenario, changes)
