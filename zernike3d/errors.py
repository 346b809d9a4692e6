"""Errors that the command line turns into one clear line for the user."""


class InputError(Exception):
    """Bad user input: names the file (or option) and what is wrong with it.

    ``str(err)`` is the whole message, e.g. ``"map.mrc: box is not cubic (64, 64, 60)"``.
    The CLI prints it as one line and exits with status 2.
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
