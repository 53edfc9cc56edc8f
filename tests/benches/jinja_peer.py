"""The benchmark's Python + Jinja2 peer: renders the templates QPF's Rust reference plugins render,
with the same contexts, as the seed's own stack did (Python + Jinja2), and reports its time.

Input (argv[1]): JSON {"reserved": {...}, "renders": [{"name", "source", "context", "output"}]},
recorded natively by `qpf_agent_model::recording`. Output (stdout): JSON with the number of
templates rendered, how many rendered byte-identical to QPF's output, those that failed, and the
median time of one pass over all of them (templates compiled once, as a long-lived generator would).
"""

import json
import statistics
import sys
import time

import jinja2

with open(sys.argv[1], encoding="utf-8") as f:
    data = json.load(f)
passes = int(sys.argv[2]) if len(sys.argv) > 2 else 15
reserved = data["reserved"]
KEYWORDS = set(reserved["keywords"])
PYDANTIC = set(reserved["pydantic"])
MODEL_IMPORTS = set(reserved["model_imports"])


# Ports of qpf_agent_model::python's filters.
def py_ident(name: str) -> str:
    out = "".join(c if (c.isascii() and c.isalnum()) or c == "_" else "_" for c in name).lstrip("_")
    if not out or out[0].isdigit():
        out = "f_" + out
    if out in KEYWORDS or out in PYDANTIC or out.startswith("model_"):
        out += "_"
    return out


def py_class(name: str) -> str:
    ident = py_ident(name)
    cls = ident[:1].upper() + ident[1:] if ident else ident
    if cls in MODEL_IMPORTS:
        cls += "_"
    return cls


def py_const(name: str) -> str:
    return py_ident(name).rstrip("_").upper()


def py_str(s: str) -> str:
    out = ['"']
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or c == "\x7f":
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def py_doc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


env = jinja2.Environment(
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)
env.filters.update(
    py_ident=py_ident,
    py_class=py_class,
    py_str=py_str,
    py_doc=py_doc,
    py_const=py_const,
    md=lambda s: s.replace("|", "\\|").replace("\n", " "),
    yaml_str=lambda s: json.dumps(s, ensure_ascii=False),
)

# Each distinct template compiled once, as a generator does.
templates = {}
compiled = []
failed = {}
for r in data["renders"]:
    try:
        if r["source"] not in templates:
            templates[r["source"]] = env.from_string(r["source"])
        compiled.append((r, templates[r["source"]]))
    except jinja2.TemplateError as e:
        failed[r["name"]] = f"compile: {e}"

usable = []
identical = 0
for r, t in compiled:
    try:
        text = t.render(r["context"])
    except Exception as e:  # noqa: BLE001 - any failure means "the template does not allow it"
        failed[r["name"]] = f"render: {type(e).__name__}: {e}"
        continue
    usable.append((r, t))
    identical += text == r["output"]

times = []
for _ in range(passes):
    start = time.perf_counter()
    for r, t in usable:
        t.render(r["context"])
    times.append(time.perf_counter() - start)

print(
    json.dumps(
        {
            "templates": len(data["renders"]),
            "rendered": len(usable),
            "identical": identical,
            "failed": failed,
            "pass_ms": statistics.median(times) * 1000 if times else None,
        }
    )
)
