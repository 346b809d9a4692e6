"""A stand-in for the ChimeraX session that the generated ChimeraX Python scripts drive
(zernike3d.io.chimerax): it records each command and numbers opened models as ChimeraX
does, so tests can check that a script opens into new numbers and closes only its own."""

import re
import sys
import types
from pathlib import Path


class FakeModel:
    def __init__(self, number, name):
        self.id, self.name = (number,), name


class FakeSession:
    """What a ChimeraX script touches: session.models (list, close), session.logger and the
    `run` of chimerax.core.commands, which records each command; `open` adds one model
    numbered as ChimeraX does (the lowest free number)."""

    def __init__(self, user_models):
        self.models = self
        self.logger = self
        self._models = [FakeModel(n + 1, "user") for n in range(user_models)]
        self.commands, self.opened, self.closed, self.log = [], [], [], []

    def list(self):
        return list(self._models)

    def close(self, models):
        self.closed += [m.id[0] for m in models]
        self._models = [m for m in self._models if m not in models]

    def info(self, text):
        self.log.append(text)

    def numbers(self):
        return sorted(m.id[0] for m in self._models)

    def run(self, session, command):
        assert session is self
        self.commands.append(command)
        if command.startswith("open "):
            files = re.findall(r'"([^"]+)"', command)
            assert all(Path(f).is_file() for f in files), command
            self.opened.append(files)
            taken = set(self.numbers())
            self._models.append(FakeModel(min(n for n in range(1, len(taken) + 2) if n not in taken), files[0]))


def run_script(path, session):
    """Execute a ChimeraX Python script as ChimeraX does (a module with ``session`` and
    ``__file__``), with chimerax.core.commands.run going to the fake session."""
    commands = types.ModuleType("chimerax.core.commands")
    commands.run = session.run
    modules = {"chimerax": types.ModuleType("chimerax"), "chimerax.core": types.ModuleType("chimerax.core"),
               "chimerax.core.commands": commands}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        exec(compile(path.read_text(), str(path), "exec"), {"session": session, "__file__": str(path)})
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
