"""pip's entry-point launchers and shebangs, byte for byte.

installer's ``Script.generate`` writes a launcher of its own (other quotes, ``shlex``
quoting, no check for a script interpreter), so pip's text is kept here: a target
installed by pipfresh must not differ from one installed by pip.
"""

from __future__ import annotations

from packaging.version import Version

_TEMPLATE_26 = """\
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(%(func)s())
"""
_TEMPLATE_25 = r"""# -*- coding: utf-8 -*-
import re
import sys
if __name__ == '__main__':
    from %(module)s import %(import_name)s
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""
_TEMPLATE_23 = r"""# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""


def script_template(pip_version: Version) -> str:
    """The launcher text the given pip writes (pip's own from 26, distlib's before)."""
    if pip_version >= Version("26"):
        return _TEMPLATE_26
    if pip_version >= Version("25"):
        return _TEMPLATE_25
    return _TEMPLATE_23


def shebang(interpreter: str) -> bytes:
    """distlib's shebang: ``#!python``, or the ``/bin/sh`` trampoline for long or spaced paths."""
    exe = f'"{interpreter}"' if " " in interpreter else interpreter
    raw = exe.encode("utf-8")
    simple = b" " not in raw and len(raw) + 3 <= 127 and not _is_script(interpreter)
    if simple:
        return b"#!" + raw + b"\n"
    return b"#!/bin/sh\n'''exec' " + raw + b' "$0" "$@"\n' + b"' '''\n"


def launcher(template: str, interpreter: str, module: str, attr: str) -> bytes:
    """An entry point's launcher as pip writes it: the shebang, then ``template`` filled."""
    text = template % {"module": module, "import_name": attr.split(".")[0], "func": attr}
    return shebang(interpreter) + text.encode("utf-8")


def _is_script(path: str) -> bool:
    try:
        with open(path.strip('"'), "rb") as fp:
            return fp.read(2) == b"#!"
    except OSError:
        return False
