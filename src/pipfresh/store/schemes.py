"""Where a virtual environment's files go: its install scheme, as pip computes it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipfresh.errors import InstallError
from pipfresh.target.interpreter import Facts


@dataclass(frozen=True)
class TargetScheme:
    """Where a virtual environment's files go, computed as pip computes it for a venv."""

    purelib: str
    platlib: str
    scripts: str
    data: str
    include: str  # headers go to include/<dist name>, pip's venv rule

    @classmethod
    def for_venv(cls, facts: Facts) -> TargetScheme:
        if not (facts.purelib and facts.platlib):
            raise InstallError("the target did not report its site-packages")
        major, minor = facts.version_info[:2]
        prefix = facts.prefix
        return cls(
            purelib=facts.purelib,
            platlib=facts.platlib,
            scripts=os.path.join(prefix, "bin"),
            data=prefix,
            include=os.path.join(prefix, "include", "site", f"python{major}.{minor}"),
        )

    def paths(self, dist_name: str) -> dict[str, str]:
        return {
            "purelib": self.purelib,
            "platlib": self.platlib,
            "scripts": self.scripts,
            "data": self.data,
            "headers": os.path.join(self.include, dist_name),
        }
