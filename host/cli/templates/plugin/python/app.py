"""`{{name}}`: a QPF extractor plugin. It writes `hello.txt` with the schema's name and the keys of
its input; replace `extract` with your generator (Jinja2: add it to requirements.txt and use
`qpf_sdk.render`)."""

from qpf_sdk import ExtractError, File, Plugin, export


class Hello(Plugin):
    name = "{{name}}"
    version = "0.1.0"
    description = "Writes a greeting per schema."

    def extract(self, request):
        if not isinstance(request.input, dict):
            raise ExtractError("the input must be an object")
        keys = ", ".join(sorted(request.input))
        return [File("hello.txt", f"hello, {request.schema.name}\ninput keys: {keys}\n")]


WitWorld = export(Hello)
