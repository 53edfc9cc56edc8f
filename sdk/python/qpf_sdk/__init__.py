"""The QPF plugin SDK for Python, over the bindings componentize-py generates for `qpf:extractor`.

A plugin subclasses `Plugin`, implements `extract`, and exports the class as the component's world::

    from qpf_sdk import File, Plugin, export

    class Hello(Plugin):
        name = "hello"
        version = "0.1.0"
        description = "Writes a greeting per schema."
        kinds = ["Agent"]

        def extract(self, request):
            return [File("hello.txt", f"hello, {request.schema.name}\\n")]

    WitWorld = export(Hello)

`qpf plugin build` turns the folder into a component with `componentize-py ... --stub-wasi`. Every
exception `extract` raises becomes an `extract-error` (an `ExtractError` keeps its diagnostics; any
other exception is reported with its type and message), never a trap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Everything is imported when the module loads: componentize-py snapshots the interpreter after
# loading the app, and a component built with `--stub-wasi` has no filesystem to import from later.
try:
    import jinja2
except ImportError:  # a plugin without Jinja2 in its requirements
    jinja2 = None

try:
    import wit_world
    from componentize_py_types import Err
    from wit_world.imports import log as _host_log
    from wit_world.imports import types as _types
except ImportError:  # outside componentize-py (documentation, unit tests of plugin logic)
    wit_world = None

__all__ = [
    "Diagnostic",
    "ExtractError",
    "File",
    "Plugin",
    "Request",
    "Response",
    "SchemaId",
    "Spawn",
    "debug",
    "error",
    "export",
    "info",
    "render",
    "template",
    "template_env",
    "warn",
]


@dataclass(frozen=True)
class SchemaId:
    """The schema an invocation reads."""

    kind: str
    name: str
    version: str


@dataclass(frozen=True)
class Request:
    """One invocation's input, with the JSON already parsed."""

    entry: str
    schema: SchemaId
    input: Any
    config: Any
    context: Any


@dataclass(frozen=True)
class File:
    """A file to write, relative to the entry's output folder. Text is encoded as UTF-8.

    A generated file (the default) is QPF's: rewritten on every run, checked for drift, removed
    when no longer produced. With `scaffold=True` it is its user's: written only when absent, then
    never overwritten, drift-checked or removed (a place for a team's own code)."""

    path: str
    contents: str | bytes
    scaffold: bool = False


@dataclass(frozen=True)
class Diagnostic:
    """A message about the input; `pointer` (a JSON Pointer into the input) lets the host show the schema line."""

    message: str
    severity: str = "warning"
    pointer: str | None = None


@dataclass(frozen=True)
class Spawn:
    """A request that the host run another plugin (allowed by the entry's `spawn`)."""

    plugin: str
    input: Any
    config: Any = field(default_factory=dict)


@dataclass
class Response:
    """What `extract` returns; a list of `File` is accepted too."""

    files: list[File] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    spawns: list[Spawn] = field(default_factory=list)


class ExtractError(Exception):
    """The plugin cannot produce output for this input; the host reports it with its diagnostics."""

    def __init__(self, message: str, diagnostics: Iterable[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = list(diagnostics)


class Plugin:
    """Base class of a plugin: set the metadata and implement `extract`."""

    name: str = "unnamed"
    version: str = "0.0.0"
    description: str = ""
    kinds: list[str] = []
    #: JSON Schema of the entry's config (a dict), checked by the host before `extract` runs.
    config_schema: dict[str, Any] | None = None

    def extract(self, request: Request) -> Response | list[File]:
        raise NotImplementedError(f"plugin {self.name} does not implement extract")


def _log(level_name: str, message: str) -> None:
    _host_log.log(getattr(_host_log.Level, level_name), message)


def debug(message: str) -> None:
    """Logs through the host (shown with `QPF_LOG=debug`)."""
    _log("DEBUG", message)


def info(message: str) -> None:
    """Logs through the host."""
    _log("INFO", message)


def warn(message: str) -> None:
    """Logs a warning through the host."""
    _log("WARN", message)


def error(message: str) -> None:
    """Logs an error through the host."""
    _log("ERROR", message)


def template_env(templates: dict[str, str] | None = None) -> Any:
    """A Jinja2 environment for code generation: strict undefined variables, no autoescape, blocks
    trimmed, trailing newline kept; `templates` (name → source) are loadable by name."""
    if jinja2 is None:
        raise RuntimeError("Jinja2 is not bundled: add `jinja2` to the plugin's requirements.txt")
    return jinja2.Environment(
        loader=jinja2.DictLoader(templates or {}),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template(source: str) -> Any:
    """A compiled Jinja2 template. Call it at module level: the component's snapshot then holds
    the compiled template, and a call only renders it (compiling costs ~20 ms per call)."""
    return template_env().from_string(source)


def render(source: str, **context: Any) -> str:
    """Compiles and renders a Jinja2 template string (prefer `template` for templates used often)."""
    return template(source).render(**context)


def _diagnostic(types: Any, d: Diagnostic) -> Any:
    severity = {"error": types.Severity.ERROR, "warning": types.Severity.WARNING, "info": types.Severity.INFO}.get(
        d.severity, types.Severity.WARNING
    )
    return types.Diagnostic(severity=severity, message=d.message, pointer=d.pointer)


def _response(types: Any, result: Response | list[File]) -> Any:
    if isinstance(result, list):
        result = Response(files=result)
    if not isinstance(result, Response):
        raise TypeError(f"extract returned {type(result).__name__}; return a Response or a list of File")
    files = []
    for f in result.files:
        contents = f.contents.encode("utf-8") if isinstance(f.contents, str) else bytes(f.contents)
        mode = types.FileMode.SCAFFOLD if f.scaffold else types.FileMode.GENERATED
        files.append(types.OutputFile(path=f.path, contents=contents, mode=mode))
    spawns = [
        types.SpawnRequest(plugin=s.plugin, input=json.dumps(s.input, sort_keys=True), config=json.dumps(s.config, sort_keys=True))
        for s in result.spawns
    ]
    return types.Response(files=files, diagnostics=[_diagnostic(types, d) for d in result.diagnostics], spawns=spawns)


def _where(e: BaseException) -> str:
    """` (at app.py:12)`: where the exception was raised (without `traceback`, which reads files)."""
    tb = e.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno})"


if jinja2 is not None:
    # Compiling one template loads the modules Jinja2 imports lazily, before the snapshot.
    template_env().from_string("{% for x in xs %}{{ x | upper }}{% endfor %}").render(xs=["warm"])


def export(plugin_class: type[Plugin]) -> type:
    """The `WitWorld` class componentize-py instantiates, running `plugin_class`."""
    types = _types
    plugin = plugin_class()

    class WitWorld(wit_world.WitWorld):
        def info(self) -> Any:
            schema = json.dumps(plugin.config_schema, sort_keys=True) if plugin.config_schema is not None else ""
            return types.PluginInfo(
                name=plugin.name,
                version=plugin.version,
                description=plugin.description,
                kinds=list(plugin.kinds),
                config_schema=schema,
            )

        def extract(self, request: Any) -> Any:
            try:
                req = Request(
                    entry=request.entry,
                    schema=SchemaId(request.schema.kind, request.schema.name, request.schema.version),
                    input=json.loads(request.input),
                    config=json.loads(request.config),
                    context=json.loads(request.context),
                )
                return _response(types, plugin.extract(req))
            except ExtractError as e:
                raise Err(
                    types.ExtractError(message=e.message, diagnostics=[_diagnostic(types, d) for d in e.diagnostics])
                ) from None
            except Exception as e:  # every exception is an extract-error, never a trap
                raise Err(types.ExtractError(message=f"{type(e).__name__}: {e}{_where(e)}", diagnostics=[])) from None

    return WitWorld
