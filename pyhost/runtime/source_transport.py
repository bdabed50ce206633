"""How a remote function source is reached: TLS trust, credentials in URLs, redirects and
timeouts, for the zip download (``urllib``) and the git fetch (``git`` over libcurl) alike.

* **TLS**: always verified, against the system's certificate authorities, plus those of the
  PEM file ``PYHOST_SOURCE_CA_FILE`` names when it is set (a server signed by your own
  authority). Python's ``SSL_CERT_FILE`` and git's ``GIT_SSL_CAINFO`` still replace the
  system's set for their own side, as they always do; the pyhost setting adds to whichever
  set is in force, for both sides. Nothing here turns verification off.
* **Credentials** (``https://user:token@host/...``): never shown. :func:`redact_url` turns
  them into ``***`` in every message and in the ``code_src`` the catalog keeps. A zip download
  sends them as HTTP Basic to the URL's own server only (a redirect does not carry them); git
  gets the URL without them and asks a credential helper that answers for that server only
  (so they are in no command line, which any user of the host may read).
* **Redirects**: a zip download follows at most urllib's 10; git follows the first request's
  only (its default). Neither may leave https for anything else: urllib refuses the
  redirect, git is allowed no transport but the URL's own (``protocol.allow=never``).
* **Timeouts**: a zip download gives up when the server is silent for 60 s; a git fetch when
  it gets less than 1 KB/s for 60 s (libcurl's low-speed limit), and after 300 s in all.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError

__all__ = ["CA_FILE_VARIABLE", "DOWNLOAD_TIMEOUT", "GitTransport", "git_transport", "open_url",
           "redact_url", "tls_advice"]

CA_FILE_VARIABLE = "PYHOST_SOURCE_CA_FILE"
DOWNLOAD_TIMEOUT = 60.0  # seconds a server may stay silent
_USERINFO = re.compile(r"(?<=://)[^/\s'\"]+@")  # to the host's last @: a password may hold one
# where a system keeps its authorities as one file (git's libcurl is built to read it)
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                   "/etc/ssl/cert.pem")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it (``scheme://user:token@``) replaced by
    ``***``."""
    return _USERINFO.sub("***@", text)


def tls_advice(message: str) -> str:
    """What to add to an error whose ``message`` says a certificate could not be verified."""
    lowered = message.lower()
    if "certificate" in lowered and ("verif" in lowered or "problem" in lowered):
        return (f"; if the server's certificate is signed by your own authority, set "
                f"{CA_FILE_VARIABLE} to that authority's PEM file")
    return ""


def _extra_ca_file() -> str | None:
    path = os.environ.get(CA_FILE_VARIABLE, "").strip()
    if path and not os.path.isfile(path):
        raise ConfigurationError(f"{CA_FILE_VARIABLE}={path!r}: no such file (give a PEM file "
                                 "of certificate authorities)")
    return path or None


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    extra = _extra_ca_file()
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"{CA_FILE_VARIABLE}={extra!r}: not a PEM file of "
                                     f"certificate authorities ({exc})") from None
    return context


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, refusing one from https to anything else (it would drop TLS)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Any, newurl: str) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            fp.close()  # urllib closes the redirect's response only after following it
            raise ConfigurationError(f"{self.what}: the server redirects to "
                                     f"{redact_url(newurl)!r}; a redirect may not leave https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(url: str, what: str) -> Any:
    """The response to a GET of ``url`` (``http(s)://``, credentials in it allowed), under the
    rules above; a context manager, as ``urlopen``'s.

    Raises:
        ConfigurationError: a bad CA setting, a refused redirect.
        OSError: the server cannot be reached or answers with an error (``HTTPError``).
    """
    parts = urlsplit(url)
    request = urllib.request.Request(parts._replace(netloc=parts.netloc.rpartition("@")[2])
                                     .geturl())
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        # unredirected: a redirect to another server does not get them
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_tls_context()),
                                         _NoDowngrade(what))
    return opener.open(request, timeout=DOWNLOAD_TIMEOUT)


@dataclass(frozen=True)
class GitTransport:
    """How ``git fetch`` reaches one URL.

    Attributes:
        url: the URL to give git: an http(s) one without its credentials (a command line is
            readable by every user of the host, and git would repeat it in its messages).
        config: ``-c`` options: only the URL's own transport (and https after http), the
            low-speed limit.
        env: variables to add: the credentials, as a helper git asks only for the URL's own
            server (``credential.<scheme>://<host>.helper``, every other helper cleared, so
            none stores them); ``GIT_SSL_CAINFO`` when ``PYHOST_SOURCE_CA_FILE`` is set.
    """

    url: str
    config: list[str]
    env: dict[str, str]


# a credential helper (git runs it with "get", "store" or "erase"): it answers only "get",
# from variables, so the values never appear in a command line or a config file
_HELPER = ('!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
           '"$PYHOST_GIT_USERNAME" "$PYHOST_GIT_PASSWORD"; }; f')


def git_transport(url: str, scratch: Path) -> GitTransport:
    """The settings a ``git fetch`` of ``url`` runs with (see :class:`GitTransport`);
    ``scratch`` is a private directory for the CA bundle: libcurl takes one file, which
    replaces the system's set, so the bundle is the authorities in force plus the setting's.

    Raises:
        ConfigurationError: the CA setting names no file.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    config = ["-c", "protocol.allow=never"]
    for name in {"http": ("http", "https")}.get(scheme, (scheme,)):
        config += ["-c", f"protocol.{name}.allow=always"]
    config += ["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60"]
    env: dict[str, str] = {}
    if scheme not in ("http", "https"):
        return GitTransport(url, config, env)
    server = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        url = parts._replace(netloc=server).geturl()
        env.update({"GIT_CONFIG_COUNT": "2",
                    "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
                    "GIT_CONFIG_KEY_1": f"credential.{scheme}://{server}.helper",
                    "GIT_CONFIG_VALUE_1": _HELPER,
                    "PYHOST_GIT_USERNAME": unquote(parts.username),
                    "PYHOST_GIT_PASSWORD": unquote(parts.password or "")})
    extra = _extra_ca_file()
    if extra:
        _tls_context()  # a file that is no PEM of authorities is refused here too, by name
        bundle = scratch / "ca-bundle.pem"
        with open(bundle, "wb") as out:
            base = os.environ.get("GIT_SSL_CAINFO") or _system_bundle()
            if base:
                out.write(Path(base).read_bytes().rstrip(b"\n") + b"\n")
            out.write(Path(extra).read_bytes())
        env["GIT_SSL_CAINFO"] = str(bundle)
    return GitTransport(url, config, env)


def _system_bundle() -> str | None:
    candidates = (*_SYSTEM_BUNDLES, ssl.get_default_verify_paths().openssl_cafile)
    return next((path for path in candidates if path and os.path.isfile(path)), None)
