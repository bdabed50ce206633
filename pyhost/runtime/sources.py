"""A function's source, fetched on the host and shipped to the container as files.

``code`` (text), ``base64`` (text, encoded) or ``code_src``: a local file or directory,
``git+https://...`` / ``git+file://...`` (``#ref`` for a branch, tag or full commit sha), or
``zip+file://...`` / ``zip+https://...``. The container never fetches anything: it gets the
files over the session channel. :func:`resolve_handler` finds the handler in the files by
reading them (``ast``), never by running them, so a wrong name fails before any container
starts.

What is read from a directory, a git repository or a zip, what is refused there, and the caps
(bytes, files, zip ratio, fetch size; each an environment variable) are in
:mod:`pyhost.runtime.source_reading`; how a remote one is reached (TLS and the
``PYHOST_SOURCE_CA_FILE`` setting, credentials in a URL, redirects, timeouts) in
:mod:`pyhost.runtime.source_transport`.
"""

from __future__ import annotations

import ast
import base64 as b64
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .source_reading import read_directory, read_file, read_git, read_zip
from .source_transport import redact_url

__all__ = ["PYTHON_VERSIONS", "HandlerInfo", "Param", "Source", "load_source",
           "parse_python", "python_wanted", "redact_url", "resolve_handler"]

# python_version -> the interpreter's "major.minor" it names
PYTHON_VERSIONS = {f"PYTHON3_{minor}": f"3.{minor}" for minor in range(9, 14)}


def python_wanted(spec: dict[str, Any]) -> str | None:
    """The "major.minor" a function's ``python_version`` asks for; None: it asks for none
    (the default image runs it, whatever its Python)."""
    version = spec.get("python_version")
    return PYTHON_VERSIONS[version] if version else None



@dataclass(frozen=True)
class Source:
    """The files of a function's source by relative path, and their digest."""

    files: dict[str, bytes]

    @property
    def digest(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            data = self.files[name]
            digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()


def load_source(*, code: str | None = None, base64: str | None = None,
                code_src: str | None = None) -> Source:
    """The files of exactly one of ``code``, ``base64`` or ``code_src``.

    Raises:
        ConfigurationError: none or several given, or the source cannot be had (the message
            says which and why).
    """
    given = [name for name, value in (("code", code), ("base64", base64),
                                       ("code_src", code_src)) if value is not None]
    if len(given) != 1:
        raise ConfigurationError(
            "a python function needs exactly one of code, base64 or code_src; "
            + (f"got {' and '.join(given)}" if given else "got none"))
    if code is not None:
        return Source({"main.py": _text("code", code).encode()})
    if base64 is not None:
        try:
            return Source({"main.py": b64.b64decode(_text("base64", base64), validate=True)})
        except ValueError as exc:
            raise ConfigurationError(f"base64: not valid base64 ({exc})") from None
    assert code_src is not None
    return _fetch(_text("code_src", code_src))


def _text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _fetch(code_src: str) -> Source:
    scheme = code_src.split("://", 1)[0] if "://" in code_src else ""
    what = f"code_src={redact_url(code_src)!r}"  # credentials in a URL are never shown
    if scheme in ("s3", "zip+s3"):
        raise ConfigurationError(f"{what}: no S3 store is configured; use a "
                                 "local path, git+https://, git+file://, zip+file:// or "
                                 "zip+https://")
    if scheme.startswith("git+"):
        return Source(read_git(code_src[len("git+"):], what))
    if scheme in ("zip+file", "zip+https", "zip+http"):
        return Source(read_zip(code_src[len("zip+"):], what))
    if scheme:
        raise ConfigurationError(f"{what}: unknown scheme {scheme!r}; use a "
                                 "local path, git+https://, git+file://, zip+file:// or "
                                 "zip+https://")
    path = Path(code_src)
    # the path the user names is theirs, so a link there is followed; nothing inside is
    if path.is_file():
        return Source({path.name: read_file(path, what)})
    if path.is_dir():
        return Source(read_directory(path, what))
    raise ConfigurationError(f"{what}: no such file or directory "
                             f"(relative to {os.getcwd()})")


@dataclass(frozen=True)
class Param:
    """A parameter of a handler, as its source declares it."""

    name: str
    required: bool


@dataclass(frozen=True)
class HandlerInfo:
    """Where a handler is and what it takes.

    Attributes:
        module: its import name (``main``, ``pkg.module``).
        function: its name in the module.
        path: the file that defines it.
        params: its named parameters; None when the name is bound some other way than a
            ``def`` (then only the container can check the call).
        takes_kwargs: whether it takes ``**kwargs``.
        outputs: the names ``@handler(outputs=...)`` gives its values, if it says.
        awaitable: it is ``async def`` (a serve handler may be; a job's may not).
    """

    module: str
    function: str
    path: str
    params: tuple[Param, ...] | None
    takes_kwargs: bool
    outputs: tuple[str, ...] | None
    awaitable: bool = False


# CPython before 3.11.8 and 3.12.1 keeps the AST converter's recursion depth per interpreter,
# not per thread: two threads parsing at once (a job started beside another) fail with
# "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_parse_lock = threading.Lock()


def parse_python(data: bytes, filename: str) -> ast.Module:
    """``ast.parse``, one thread at a time (see above).

    Raises:
        SyntaxError, ValueError: the file does not parse (or holds a null byte).
    """
    with _parse_lock:
        return ast.parse(data, filename=filename)


def resolve_handler(source: Source, handler: str) -> HandlerInfo:
    """Find ``handler`` (``func``, or ``pkg.module:func``) in the source's files.

    Raises:
        ConfigurationError: no such module or name, or the module does not parse.
    """
    if not isinstance(handler, str) or not handler:
        raise ConfigurationError("handler: give the function's name, e.g. 'main' or "
                                 "'pkg.module:main'")
    module, _, function = handler.rpartition(":")
    if not module:
        module = _default_module(source, handler)
    path = _module_path(source, module, handler)
    try:
        tree = parse_python(source.files[path], path)
    except SyntaxError as exc:
        raise ConfigurationError(f"handler {handler!r}: {path} does not parse: {exc}") from None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return _describe(module, function, path, node)
    if function in _other_bindings(tree):
        return HandlerInfo(module, function, path, None, True, None)
    defined = sorted(node.name for node in tree.body if isinstance(node, ast.FunctionDef))
    raise ConfigurationError(f"handler {handler!r}: {path} defines no function {function!r}"
                             + (f" (it defines {', '.join(defined)})" if defined else ""))


def _default_module(source: Source, handler: str) -> str:
    if "main.py" in source.files:
        return "main"
    python = [name for name in source.files if name.endswith(".py")]
    if len(python) == 1 and "/" not in python[0]:
        return python[0][:-3]
    raise ConfigurationError(f"handler {handler!r}: the source has no main.py and not one "
                             f"single module; name the module: 'module:{handler}'")


def _module_path(source: Source, module: str, handler: str) -> str:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in source.files:
            return candidate
    modules = sorted(name[:-3].replace("/", ".") for name in source.files
                     if name.endswith(".py"))
    raise ConfigurationError(f"handler {handler!r}: the source has no module {module!r} "
                             f"(it has {', '.join(modules) or 'no Python files'})")


def _describe(module: str, function: str, path: str,
              node: ast.FunctionDef | ast.AsyncFunctionDef) -> HandlerInfo:
    args = node.args
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    params = [Param(arg.arg, index < first_default) for index, arg in enumerate(positional)]
    params += [Param(arg.arg, default is None)
               for arg, default in zip(args.kwonlyargs, args.kw_defaults)]
    return HandlerInfo(module, function, path, tuple(params), args.kwarg is not None,
                       _declared_outputs(node), isinstance(node, ast.AsyncFunctionDef))


def _declared_outputs(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...] | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and _called(decorator.func) == "handler":
            for keyword in decorator.keywords:
                if keyword.arg == "outputs":
                    try:
                        return tuple(ast.literal_eval(keyword.value))
                    except ValueError:
                        return None
    return None


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _other_bindings(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
    return names
