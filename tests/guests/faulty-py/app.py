"""A plugin that fails on purpose, by `input["mode"]`: `raise` raises a ValueError, `bad-path`
returns a file outside the output folder. The host must report each clearly, never as a trap."""

from qpf_sdk import File, Plugin, export


class Faulty(Plugin):
    name = "faulty-py"
    version = "0.1.0"
    description = "Fails on purpose."

    def extract(self, request):
        mode = request.input["mode"]
        if mode == "raise":
            raise ValueError("the input asked for it")
        if mode == "bad-path":
            return [File("../escape.txt", "out of bounds\n")]
        return [File("ok.txt", "ok\n")]


WitWorld = export(Faulty)
