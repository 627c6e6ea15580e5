"""PEP 751 ``pylock.toml`` as a requirements source (pip >= 26.3: ``-r pylock.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import index_args, install
from integration.test_fastpath_parity import EndState, assert_same_end_state, reinstalled_venv
from pipfresh.testing.dists import build_wheel


def test_a_pylock_file_installs_from_the_store_as_pip_installs_it(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    index.publish(
        build_wheel(dist_dir, "alpha", "1.0", requires=["beta>=2"]),
        build_wheel(dist_dir, "beta", "2.0"),
        build_wheel(dist_dir, "beta", "2.1"),
    )
    venv = make_venv(py311, name="env")
    lock = tmp_path / "pylock.toml"
    venv.pip("lock", *index_args(index), "alpha", "beta==2.0", "-o", lock)
    venv.pip("install", *index_args(index), "-r", lock)
    by_pip = EndState.of(venv)

    venv = reinstalled_venv(make_venv, py311, venv)
    run = install(
        venv, "-r", lock,
        summary=tmp_path / "s.json", index=index,
    ).ok()  # fmt: skip
    assert run.summary is not None and run.summary["installer"] == "store", run.summary
    assert_same_end_state(by_pip, venv)
    # The locked versions are the ones installed (beta 2.1 exists, the lock says 2.0).
    assert by_pip.metadata["beta"]["version"] == "2.0"
