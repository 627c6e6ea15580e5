"""Facts about an interpreter, printed as JSON. Runs *under the target*: stdlib only.

Kept compatible with every Python pipfresh can target (3.7+), so no f-string `=`,
no walrus, no builtin generics in annotations. ``interpreter.py`` runs this file's source with ``-c``.
"""

import json
import os
import platform
import struct
import sys
import sysconfig
from typing import Optional, Tuple


def _glibc() -> Optional[str]:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, OSError, ValueError):
        return None
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0] != "glibc":
        return None
    return parts[1]


def _musl() -> Optional[str]:
    import glob
    import subprocess

    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        try:
            proc = subprocess.run([loader], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except OSError:
            continue
        for line in proc.stderr.decode("utf-8", "replace").splitlines():
            if line.startswith("Version "):
                return line.split()[1]
    return None


def _pip() -> Tuple[Optional[str], Optional[str]]:
    try:
        import pip  # pip/__init__.py is tiny: this does not import pip's internals
    except Exception:
        return None, None
    init = getattr(pip, "__file__", None)
    return getattr(pip, "__version__", None), init


def main() -> None:
    config = sysconfig.get_config_vars()
    pip_version, pip_init = _pip()
    libc = None
    libc_version = None
    if sys.platform.startswith("linux"):
        libc_version = _glibc()
        if libc_version:
            libc = "glibc"
        else:
            libc_version = _musl()
            libc = "musl" if libc_version else None
    paths = sysconfig.get_paths()
    facts = {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "implementation": sys.implementation.name,
        "version_info": list(sys.version_info),
        "version": sys.version,
        "cache_tag": sys.implementation.cache_tag,
        "soabi": config.get("SOABI"),
        "ext_suffix": config.get("EXT_SUFFIX"),
        "gil_disabled": bool(config.get("Py_GIL_DISABLED")),
        "debug": bool(config.get("Py_DEBUG")) or hasattr(sys, "gettotalrefcount"),
        "abiflags": getattr(sys, "abiflags", ""),
        "sys_platform": sys.platform,
        "sysconfig_platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "pointer_bits": struct.calcsize("P") * 8,
        "libc": libc,
        "libc_version": libc_version,
        "pip_version": pip_version,
        "pip_init": pip_init,
        "purelib": paths.get("purelib"),
        "platlib": paths.get("platlib"),
    }
    sys.stdout.write(json.dumps(facts))


if __name__ == "__main__":
    main()
