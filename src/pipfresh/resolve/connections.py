"""Talking to an index as pip would, over kept-alive connections.

pip's connection options (``--cert``, ``--client-cert``, ``--trusted-host``,
``--proxy``, ``--timeout``; the same ``PIP_*`` variables; ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE`` and the environment's proxies, as pip's requests reads them) on
urllib3, pip's own HTTP library: one pool per host, at most ``per_host``
connections each, kept alive across requests, so a round of sixty conditional
requests makes a handful of TCP and TLS handshakes rather than sixty. Redirects are
not followed (a page that moved is pip's to resolve) and nothing is retried (a
failure leaves the request to pip, which retries as the user told it).
"""

from __future__ import annotations

import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3

from pipfresh.pip.args import option_values

_TIMEOUT = 15.0  # pip's default --timeout


class Unreachable(Exception):
    """No answer: why, in the words of the error underneath (``Connection refused``)."""


@dataclass(frozen=True)
class Response:
    """An answer read whole: its status, headers (as the server sent them, repeats kept),
    and body as sent (still gzipped), or None when over the limit asked for."""

    status: int
    headers: Any  # urllib3.HTTPHeaderDict
    body: bytes | None


class Connections:
    """Connection pools with pip's TLS, proxy and timeout options; thread-safe."""

    def __init__(self, pip_args: Sequence[str], env: Mapping[str, str], per_host: int) -> None:
        values = _values(pip_args, env)
        self.timeout = float(values.get("timeout") or _TIMEOUT)
        trusted = set(values.get("trusted-host", "").split())
        self.trusted = {h.split(":")[0] for h in trusted} | trusted
        self.cafile = (
            values.get("cert") or env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
        )
        self.client_cert = values.get("client-cert")
        self.proxy = values.get("proxy")
        self.per_host = per_host
        self._managers: dict[tuple[str, bool, str | None], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def get(self, url: str, headers: Mapping[str, str], limit: int) -> Response:
        """``GET url``, its body read up to ``limit`` bytes. Raises ``Unreachable``
        when no answer came (a refused or dropped connection, a timeout, TLS)."""
        try:
            manager = self._manager(url)
            response = manager.request(
                "GET",
                url,
                headers=dict(headers),
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
                timeout=self.timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise Unreachable(_reason(exc)) from exc
        try:
            body = _read(response, limit)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            response.close()
            raise Unreachable(_reason(exc)) from exc
        if body is None:
            response.close()  # not read to its end: the connection cannot be used again
        else:
            response.release_conn()
        return Response(int(response.status), response.headers, body)

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pools for ``url``'s host: trusted or verified, direct or through its proxy.
        TLS contexts are made on first use (an index over http needs none)."""
        parts = urllib.parse.urlsplit(url)
        trusted = bool({parts.hostname, parts.netloc} & self.trusted)
        proxy = self._proxy_for(parts)
        key = (parts.scheme, trusted, proxy)
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = self._make(*key)
        return manager

    def _make(self, scheme: str, trusted: bool, proxy: str | None) -> urllib3.PoolManager:
        options: dict[str, Any] = {"num_pools": 16, "maxsize": self.per_host, "block": True}
        if scheme == "https":
            options["ssl_context"] = self._context(trusted)
            if trusted:
                options.update(cert_reqs="CERT_NONE", assert_hostname=False)
        if proxy is None:
            return urllib3.PoolManager(**options)
        auth = urllib.parse.urlsplit(proxy)
        if auth.username is not None:
            user = urllib.parse.unquote(auth.username)
            password = urllib.parse.unquote(auth.password or "")
            options["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}")
        return urllib3.ProxyManager(proxy, **options)

    def _context(self, trusted: bool) -> ssl.SSLContext:
        if trusted:  # for --trusted-host hosts, as pip does
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE
            return insecure
        verified = ssl.create_default_context(cafile=self.cafile or None)
        if self.client_cert:
            verified.load_cert_chain(self.client_cert)
        return verified

    def _proxy_for(self, parts: urllib.parse.SplitResult) -> str | None:
        """``--proxy`` for every scheme, else the environment's proxy for this one (none
        for a host ``no_proxy`` names), as requests chooses for pip."""
        proxies = (
            {"http": self.proxy, "https": self.proxy} if self.proxy else urllib.request.getproxies()
        )
        found = proxies.get(parts.scheme)
        if not found or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
            return None
        return found if "://" in found else f"http://{found}"


def _read(response: Any, limit: int) -> bytes | None:
    """The whole body as sent, or None once it is over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(1 << 16, decode_content=False)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _reason(exc: BaseException) -> str:
    """The innermost error's own words: ``Connection refused`` rather than urllib3's
    wrapping of it (``.reason`` of a pool error, the cause, or an error in its args)."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or next(
                (a for a in exc.args if isinstance(a, BaseException)), None
            )
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    return str(getattr(exc, "strerror", None) or exc)


def _values(pip_args: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The connection options pip would use (command line over environment)."""
    names = ("timeout", "trusted-host", "cert", "client-cert", "proxy")
    out = {n: env.get(f"PIP_{n.upper().replace('-', '_')}", "") for n in names}
    for name in names:
        given = list(option_values(pip_args, {f"--{name}"}))
        if given:
            out[name] = " ".join(given) if name == "trusted-host" else given[-1]
    return {k: v for k, v in out.items() if v}
