"""pipfresh's benchmark harness: pipfresh against pip, the no-cache recipe and uv.

``python -m benchmarks run`` measures; ``python -m benchmarks.corpus`` fetches
the corpus once. Other scripts build on the same parts: serve a corpus
(:func:`serve`), make a fresh venv (:class:`Venvs`), run a contender
(:data:`CONTENDERS`, :func:`measure`) and read what the index served
(:class:`Measurement`).
"""

from __future__ import annotations
