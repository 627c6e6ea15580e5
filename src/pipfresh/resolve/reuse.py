"""Reusing the last resolution when nothing it depended on has changed.

pip's dry run is most of a warm install. Its outcome is a function of the
inputs (pip and its arguments, requirement and constraint files, pip's
configuration and environment, the interpreter, what the target already has)
and of the index pages pip read. After a dry run pipfresh records the inputs'
digest, pip's report, and each page pip fetched (from pip's ``--log``) with its
validators (from pip's own cache entry). Next time, when the digest matches,
every page is revalidated at once with conditional requests; only when all of
them answer 304 Not Modified (or 404 again) is the recorded report used, so a
version published a second ago is still seen: its page changed. Only a report
whose every hash its page lists is recorded: a page that lists no hashes would
answer 304 for a file replaced under the same URL.

Anything that could make the same pages resolve differently, or that pipfresh
cannot revalidate as pip would, means pip resolves as usual: find-links and
``--no-index`` (local listings), direct and file URLs, a relative
``--uploaded-prior-to``, credentials in an index URL, a page without
validators, an unreachable index.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pipfresh import __version__
from pipfresh.cache import fs
from pipfresh.layout import RESOLUTIONS, Partition
from pipfresh.pip import httpcache, invoke, options
from pipfresh.pip.args import option_values
from pipfresh.pip.config import ConfigError, PipConfig, config_files
from pipfresh.pip.report import Item
from pipfresh.target.interpreter import Target

# What pip sends for an index page (invoke._internal.index.collector._get_simple_response).
_ACCEPT = ", ".join(
    [
        "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.v1+html; q=0.1",
        "text/html; q=0.01",
    ]
)
_FETCHING = re.compile(r"Fetching project page and analyzing links: (\S+)")
_NOT_FOUND = re.compile(r"Could not fetch URL (\S+): 404 Client Error")
_TIMEOUT = 15.0  # pip's default --timeout
_WORKERS = 32  # uv fetches 50 at once; pip, one after another
_PAGE_LIMIT = 64 << 20  # as httpcache.read_body

# Options whose value names a file whose contents are part of the inputs.
_FILE_OPTIONS = options.named(options.INPUTS)
# Options pip reads a log file from: pipfresh needs its own --log for the dry run.
_LOG_OPTIONS = options.named(options.LOG)
_LISTING_OPTIONS = options.named(options.LISTING)  # -f, --find-links, --no-index
_LOG_ENV = ("PIP_LOG", "PIP_LOG_FILE", "PIP_LOCAL_LOG")
# Environment that can change what pip sees, besides PIP_*.
_OTHER_ENV = ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "PYTHONHOME")


@dataclass(frozen=True)
class Page:
    """An index page the resolution read, and how to ask whether it changed."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    missing: bool = False  # pip got 404: the page must still be absent


@dataclass(frozen=True)
class Inputs:
    """The digest of everything but the index that decides pip's resolution.

    ``digest`` is None when the resolution cannot be reused; ``reason`` says why.
    """

    digest: str | None
    reason: str | None = None


# -- the inputs ----------------------------------------------------------------------


def inputs(
    pip_args: Sequence[str], env: Mapping[str, str], target: Target, program: invoke.PipProgram
) -> Inputs:
    """The inputs' digest, or why this run's resolution cannot be reused."""
    args = _without_report(pip_args)
    why = _unsupported(args, env)
    if why is not None:
        return Inputs(None, why)
    digest = hashlib.sha256()

    def add(label: str, value: object) -> None:
        digest.update(json.dumps([label, value], sort_keys=True, default=str).encode())

    add("format", 2)
    add("pip", program.description)  # its version, and whose pip (never a path)
    add("args", args)
    facts = asdict(target.facts)
    add("target", {k: v for k, v in facts.items() if k not in _WHERE})
    add("env", sorted((k, v) for k, v in env.items() if _counts(k)))
    try:
        for place, path in enumerate(config_files(env, target.facts.prefix)):
            text = _read_or_none(path)
            if text is not None and "uploaded" in text:
                return Inputs(None, f"{path} sets an upload cut-off")
            add("config", [place, text])
        for path in _input_files(args, env):
            add("file", [str(path), path.read_text(encoding="utf-8", errors="surrogateescape")])
    except _Unsupported as exc:
        return Inputs(None, str(exc))
    except OSError as exc:
        return Inputs(None, f"cannot read {exc.filename}")
    site = _site_listing(target)
    if site is None:
        return Inputs(None, "the target sees system site-packages")
    add("site", site)
    return Inputs(digest.hexdigest())


# Where the target lives (not what it is): a fresh venv at another path, with the same
# interpreter and the same distributions, resolves the same way.
_WHERE = frozenset({"executable", "prefix", "purelib", "platlib", "pip_init"})


def _counts(name: str) -> bool:
    """Whether an environment variable can change what pip resolves (not where it caches)."""
    return (name.startswith("PIP_") and name != "PIP_CACHE_DIR") or name in _OTHER_ENV


class _Unsupported(Exception):
    """An input pipfresh cannot fingerprint, so the resolution is not reused."""


def _without_report(pip_args: Sequence[str]) -> list[str]:
    """The arguments without ``--report FILE``: where the report goes does not matter."""
    out: list[str] = []
    skip = False
    for token in pip_args:
        if skip:
            skip = False
        elif token == "--report":
            skip = True
        elif not token.startswith("--report="):
            out.append(token)
    return out


def _unsupported(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    for token in args:
        name = token.split("=", 1)[0]
        if name in _LOG_OPTIONS:
            return f"{name} given"
        if name.startswith("--uploaded-prior"):
            return "an upload cut-off can move with time"
        if name in _LISTING_OPTIONS or (name.startswith("-f") and not name.startswith("--")):
            return f"{name} (local listings cannot be revalidated)"
    for key in (*_LOG_ENV, "PIP_UPLOADED_PRIOR_TO", "PIP_NO_INDEX", "PIP_FIND_LINKS"):
        if env.get(key):
            return f"{key} is set"
    return None


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as exc:
        raise _Unsupported(f"cannot read {path}: {exc.strerror}") from exc


def _input_files(args: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """Requirement and constraint files, with the files they include, in order."""
    named = [Path(p) for p in (env.get("PIP_CONSTRAINT") or "").split()]
    named += [Path(p) for p in (env.get("PIP_REQUIREMENT") or "").split()]
    named += [Path(value) for value in option_values(args, _FILE_OPTIONS)]
    seen: list[Path] = []
    for path in named:
        _collect(path, seen)
    return seen


def _collect(path: Path, seen: list[Path]) -> None:
    if "://" in str(path):
        raise _Unsupported(f"{path} is a URL")
    real = path.resolve()
    if real in seen:
        return
    seen.append(real)
    text = real.read_text(encoding="utf-8", errors="surrogateescape")
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        words = line.replace("=", " ", 1).split()
        name = words[0]
        if name in _LISTING_OPTIONS or line.startswith("-f"):
            raise _Unsupported(f"{path} uses {name} (local listings cannot be revalidated)")
        for value in option_values(words, _FILE_OPTIONS):
            included = Path(value)
            _collect(included if included.is_absolute() else real.parent / included, seen)


def _site_listing(target: Target) -> list[str] | None:
    """What the target has installed, as names of its metadata and ``.pth`` files."""
    try:
        cfg = Path(target.facts.prefix, "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        cfg = ""
    if re.search(r"^\s*include-system-site-packages\s*=\s*true\s*$", cfg, re.M | re.I):
        return None
    listing: set[str] = set()
    for kind in ("purelib", "platlib"):
        directory = getattr(target.facts, kind)
        try:
            names = os.listdir(str(directory)) if directory else []
        except OSError:
            continue
        listing.update(
            f"{kind}/{n}"
            for n in names
            if n.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))
        )
    return sorted(listing)


# -- recording -----------------------------------------------------------------------


def pages_from_log(log: Path, http_dir: Path) -> tuple[list[Page], str | None]:
    """The pages pip's dry run read, with their validators; or why they cannot be known."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], f"cannot read pip's log: {exc.strerror}"
    if "Looking in links:" in text:
        return [], "find-links (local listings cannot be revalidated)"
    missing = set(_NOT_FOUND.findall(text))
    pages: dict[str, Page] = {}
    for url in fetched_pages(text):
        if url in pages:
            continue
        if "****" in url or "@" in urllib.parse.urlsplit(url).netloc:
            return [], "an index URL carries credentials"
        if not url.startswith(("http://", "https://")):
            return [], f"{url} is not an HTTP index page"
        if url in missing:
            pages[url] = Page(url, missing=True)
            continue
        page = _with_validators(url, http_dir)
        if page is None:
            return [], f"{url} has no cached validator (ETag or Last-Modified)"
        pages[url] = page
    if not pages:
        return [], "pip read no index page"
    return list(pages.values()), None


def fetched_pages(log_text: str) -> list[str]:
    """The index pages pip fetched, in order, from its ``--log``."""
    return list(dict.fromkeys(_FETCHING.findall(log_text)))


def user_log(
    pip_args: Sequence[str], env: Mapping[str, str], prefix: str, config: PipConfig | None = None
) -> Path | None:
    """The log the user has pip write, if any (pip takes one ``--log``: pipfresh then
    adds none), as pip chooses it: the command line, then ``PIP_LOG`` and pip's
    configuration files (``PipConfig`` reads both as pip does)."""
    given = list(option_values(pip_args, _LOG_OPTIONS))
    if given:
        return Path(given[-1])
    try:
        values = (config or PipConfig.load(pip_args, env, prefix)).values()
    except ConfigError:
        return None
    found = next((values[k] for k in ("log", "log-file", "local-log") if values.get(k)), None)
    return Path(os.path.expanduser(found)) if found else None


def _with_validators(url: str, http_dir: Path) -> Page | None:
    try:
        entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, url))
        response = httpcache.read_entry(entry)
    except (OSError, ValueError, httpcache.CorruptEntry):
        return None
    etag = response.etag
    last_modified = response.headers.get("Last-Modified")
    if response.status != 200 or (etag is None and last_modified is None):
        return None
    return Page(url, etag=etag, last_modified=last_modified)


def unattested(items: Sequence[Item], pages: Sequence[Page], http_dir: Path) -> Item | None:
    """The first item whose sha256 no page of its project lists, in pip's cached copy.

    A reused report is installed with no download, so its hashes must be ones the
    index vouches for: a ``#sha256=`` (or a JSON hash) on the page, which is still
    there as long as the page answers 304. A hash pip worked out from its own
    download (a page that lists none) held for that run only: the file may since
    have been replaced under the same URL, and the page would not show it.
    """
    listed = Listings.of([p.url for p in pages if not p.missing], http_dir)
    return next((item for item in items if not listed.vouch_for(item)), None)


@dataclass(frozen=True)
class Listings:
    """The index pages a dry run read, by project, to ask which hashes they list."""

    bodies: Mapping[str, Sequence[bytes]]  # canonical project -> its pages, lower-cased

    @classmethod
    def of(
        cls, urls: Iterable[str], http_dir: Path, fetch: Callable[[str], bytes | None] | None = None
    ) -> Listings:
        """Each page as pip's cache holds it; one it does not hold (an index that sends no
        caching headers) is asked for again with ``fetch``, when given, all at once."""

        def body(url: str) -> bytes | None:
            try:
                entry = httpcache.entry_files_for(httpcache.entry_path(http_dir, url))
                return httpcache.read_body(entry)
            except (OSError, ValueError, httpcache.CorruptEntry):
                return fetch(url) if fetch is not None else None

        unique = list(dict.fromkeys(urls))
        with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(unique)))) as pool:
            found = list(pool.map(body, unique))
        bodies: dict[str, list[bytes]] = {}
        for url, page in zip(unique, found):
            if page is not None:
                bodies.setdefault(cls.project_of(url), []).append(page.lower())
        return cls(bodies)

    @staticmethod
    def project_of(url: str) -> str:
        """The canonical project a page URL (``.../simple/<project>/``) lists."""
        return str(canonicalize_name(url.rstrip("/").rsplit("/", 1)[-1]))

    def vouch_for(self, item: Item) -> bool:
        """Whether a page of the item's project lists its sha256."""
        digest = item.sha256.lower().encode()
        return any(
            digest in body for body in self.bodies.get(str(canonicalize_name(item.name)), [])
        )


# 2: only resolutions whose hashes their pages list (``unattested``) are recorded.
_FORMAT = 3  # 3: the names pip's resolver spelled (older records are resolved again)


def save(
    partition: Partition,
    digest: str,
    pages: Sequence[Page],
    report: Path,
    names: Mapping[str, str],
) -> None:
    """Record a resolution atomically (a reader never sees half a file), with each
    distribution's name as pip's resolver spelled it (what pip prints, and names
    headers after)."""
    data = {
        "format": _FORMAT,
        "pages": [asdict(p) for p in pages],
        "report": json.loads(report.read_text(encoding="utf-8")),
        "names": dict(names),
    }
    _write(partition.state_dir / RESOLUTIONS / f"{digest}.json", json.dumps(data))


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a reader never sees half a file, and a copy that
    shares the old file's inode (a hardlinked backup) keeps the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.write_atomic(path, text)


@dataclass(frozen=True)
class Recorded:
    """A recorded resolution: the pages to revalidate, pip's report, the names."""

    pages: list[Page]
    report: dict[str, Any]
    names: dict[str, str]


def load(partition: Partition, digest: str) -> Recorded | None:
    """The recorded resolution for these inputs; None if absent or unreadable."""
    path = partition.state_dir / RESOLUTIONS / f"{digest}.json"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        if data.get("format") != _FORMAT or not isinstance(data.get("report"), dict):
            return None
        pages = [Page(**p) for p in data["pages"]]
        names = {str(k): str(v) for k, v in data["names"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not pages:
        return None
    try:  # last used, for `cache prune` (rewritten, not touched: see _write)
        _write(path, text)
    except OSError:
        pass
    return Recorded(pages, data["report"], names)


# -- revalidating --------------------------------------------------------------------


class Revalidator:
    """Conditional requests for index pages, with pip's TLS, proxy and timeout options."""

    def __init__(self, pip_args: Sequence[str], env: Mapping[str, str]) -> None:
        values = _values(pip_args, env)
        self.timeout = float(values.get("timeout") or _TIMEOUT)
        trusted = set(values.get("trusted-host", "").split())
        self.trusted = {h.split(":")[0] for h in trusted} | trusted
        cafile = values.get("cert") or env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
        verified = ssl.create_default_context(cafile=cafile or None)
        if values.get("client-cert"):
            verified.load_cert_chain(values["client-cert"])
        insecure = ssl.create_default_context()  # for --trusted-host hosts, as pip does
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        proxy = values.get("proxy")
        common: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if proxy:
            common.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
        self.openers = {
            trusted: urllib.request.build_opener(
                *common, urllib.request.HTTPSHandler(context=insecure if trusted else verified)
            )
            for trusted in (False, True)
        }

    def change(self, page: Page) -> str | None:
        """None when the page is as it was (304 for a page pip had, 404 for one it did not),
        else what happened to it, for the summary: changed, or could not be revalidated."""
        headers = {
            "Accept": _ACCEPT,
            "Cache-Control": "max-age=0",
            "User-Agent": f"pipfresh/{__version__} (revalidating a resolution)",
        }
        if page.etag:
            headers["If-None-Match"] = page.etag
        if page.last_modified:
            headers["If-Modified-Since"] = page.last_modified
        request = urllib.request.Request(page.url, headers=headers)
        try:
            with self._opener(page.url).open(request, timeout=self.timeout) as response:
                status = int(response.status)  # a changed page's body is pip's to read
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return f"could not be revalidated ({getattr(reason, 'strerror', None) or reason})"
        if status == (404 if page.missing else 304):
            return None
        if status in (200, 404):
            return "changed"
        return f"could not be revalidated (HTTP {status})"

    def read(self, url: str) -> bytes | None:
        """The page at ``url`` as the index serves it now; None on any failure (a redirect
        too). For a page pip's cache does not keep: what does it list?"""
        headers = {"Accept": _ACCEPT, "User-Agent": f"pipfresh/{__version__} (reading a page)"}
        request = urllib.request.Request(url, headers=headers)
        try:
            with self._opener(url).open(request, timeout=self.timeout) as response:
                body: bytes = response.read(_PAGE_LIMIT + 1)
        except (OSError, ValueError, http.client.HTTPException):
            return None
        return body if len(body) <= _PAGE_LIMIT else None

    def _opener(self, url: str) -> urllib.request.OpenerDirector:
        host = urllib.parse.urlsplit(url)
        return self.openers[bool({host.hostname, host.netloc} & self.trusted)]

    def all_unchanged(self, pages: Sequence[Page]) -> tuple[int, str | None]:
        """How many pages are unchanged, and the first that is not, with what happened to it
        (``<url> changed``, ``<url> could not be revalidated (HTTP 500)``), None if all are."""
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(pages))) as pool:
            results = list(pool.map(self.change, pages))
        changed = [f"{p.url} {what}" for p, what in zip(pages, results) if what is not None]
        return len(pages) - len(changed), (changed[0] if changed else None)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect means the page moved: pip resolves, pipfresh does not guess."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _values(pip_args: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The connection options pip would use (command line over environment)."""
    names = ("timeout", "trusted-host", "cert", "client-cert", "proxy")
    out = {n: env.get(f"PIP_{n.upper().replace('-', '_')}", "") for n in names}
    for name in names:
        given = list(option_values(pip_args, {f"--{name}"}))
        if given:
            out[name] = " ".join(given) if name == "trusted-host" else given[-1]
    return {k: v for k, v in out.items() if v}
