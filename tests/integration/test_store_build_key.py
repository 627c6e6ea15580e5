"""A wheel built from an sdist is stored per build options: ``-C`` (or PIP_CONFIG_SETTINGS)
with other values builds again, the same values reuse the stored build.

The sdist's in-tree backend (flit_core underneath) writes the config settings it
was given into the wheel and logs every ``build_wheel`` call, so the test sees
both what was installed and whether a build ran.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from helpers import index_args, pipfresh, store_env
from pipfresh.resolve.buildkey import BuildOptions
from pipfresh.testing.dists import build_sdist

_BACKEND = '''"""flit_core, but the wheel records the config settings it was built with."""
import json, os
from flit_core import buildapi as _flit

get_requires_for_build_wheel = _flit.get_requires_for_build_wheel
prepare_metadata_for_build_wheel = _flit.prepare_metadata_for_build_wheel
get_requires_for_build_sdist = _flit.get_requires_for_build_sdist
build_sdist = _flit.build_sdist


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    settings = dict(config_settings or {})
    with open(os.path.join("cfgpkg", "built_with.py"), "w") as fp:
        fp.write("SETTINGS = %r\\n" % (settings,))
    with open(os.environ["CFGPKG_BUILD_LOG"], "a") as fp:
        fp.write(json.dumps(settings) + "\\n")
    return _flit.build_wheel(wheel_directory, config_settings, metadata_directory)
'''


def _read(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if not member.isfile():
        return b""
    f = tf.extractfile(member)
    assert f is not None
    return f.read()


def config_sdist(out: Path) -> Path:
    """``cfgpkg-1.0.tar.gz`` whose pyproject names the in-tree backend above."""
    sdist = build_sdist(
        out,
        "cfgpkg",
        "1.0",
        modules={
            "cfgpkg/__init__.py": '"""cfgpkg."""\n__version__ = "1.0"\n',
            "_backend/cfgbackend.py": _BACKEND,
        },
    )
    with tarfile.open(sdist) as tf:
        members = [(m, _read(tf, m)) for m in tf]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for member, data in members:
            if member.name.endswith("/pyproject.toml"):
                data = data.replace(
                    b'build-backend = "flit_core.buildapi"',
                    b'build-backend = "cfgbackend"\nbackend-path = ["_backend"]',
                )
                member.size = len(data)
            tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    sdist.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return sdist


class Installs:
    """Installs cfgpkg afresh into one venv through the store, with the given options."""

    def __init__(self, index: Any, venv: Any, tmp_path: Path) -> None:
        self.index, self.venv = index, venv
        self.log = tmp_path / "builds.log"
        self.summary = tmp_path / "s.json"

    def __call__(self, *options: str, **env: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The settings the installed cfgpkg was built with, and every build so far."""
        venv = self.venv
        venv.pip("uninstall", "--yes", "cfgpkg")
        argv = ["install", "--python", venv.python, *index_args(self.index), *options, "cfgpkg"]
        environ = store_env(CFGPKG_BUILD_LOG=str(self.log), **env)
        run = pipfresh(*argv, env=environ, summary=self.summary).ok()
        assert run.summary is not None and run.summary["installer"] == "store", run.summary
        code = "import cfgpkg.built_with as b; print(repr(b.SETTINGS))"
        settings = ast.literal_eval(venv.run("-c", code).stdout.strip())
        builds = [json.loads(line) for line in self.log.read_text().splitlines()]
        return settings, builds


def test_build_options_key_built_wheels(
    index: Any, dist_dir: Path, make_venv: Any, py311: Path, tmp_path: Path
) -> None:
    index.publish(config_sdist(dist_dir))
    install = Installs(index, make_venv(py311, name="env"), tmp_path)
    red, blue, green = ({"flavour": c} for c in ("red", "blue", "green"))
    assert install("-C", "flavour=red") == (red, [red])
    # Other settings: built again, not the red wheel from the store.
    assert install("-C", "flavour=blue") == (blue, [red, blue])
    # The same settings again (spelt another way): the stored build, no build.
    assert install("--config-settings=flavour=red") == (red, [red, blue])
    # From the environment, as pip reads it.
    assert install(PIP_CONFIG_SETTINGS="flavour=green") == (green, [red, blue, green])
    # None: built without settings (not any of the above), then from the store.
    assert install() == ({}, [red, blue, green, {}])
    assert install() == ({}, [red, blue, green, {}])
    # Options after a build without: not the build stored under the sdist's sha256.
    assert install("-Cflavour=red") == (red, [red, blue, green, {}])


def test_build_options_of_a_run(tmp_path: Path) -> None:
    """Which options count, from arguments, environment and config files."""
    sha = "ab" * 32
    none = BuildOptions.of(["-r", "reqs.txt", "--pre"], {"PIP_CONFIG_FILE": "/dev/null"})
    assert none.default and none.key(sha) == sha
    one = BuildOptions.of(["-C", "a=1"], {"PIP_CONFIG_FILE": "/dev/null"})
    same = BuildOptions.of(["-Ca=1"], {"PIP_CONFIG_FILE": "/dev/null"})
    other = BuildOptions.of(["--config-settings", "a=2"], {"PIP_CONFIG_FILE": "/dev/null"})
    assert one.key(sha) == same.key(sha) != other.key(sha) != sha
    isolation = BuildOptions.of(["--no-build-isolation"], {"PIP_CONFIG_FILE": "/dev/null"})
    env = BuildOptions.of([], {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_BUILD_ISOLATION": "0"})
    assert len({isolation.key(sha), env.key(sha), one.key(sha), sha}) == 4
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://example.invalid\n")
    assert BuildOptions.of([], {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path)}).default
    conf.write_text("[install]\nconfig-settings =\n    a=1\n    b=2\n")
    from_file = BuildOptions.of([], {"PIP_CONFIG_FILE": str(conf), "HOME": str(tmp_path)})
    assert not from_file.default and len(from_file.options) == 3
