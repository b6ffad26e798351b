"""User-facing errors: one line, naming the problem; the CLI prints them without a traceback."""


class UnnoiseError(Exception):
    """A user error (bad name, bad path, bad value). Its message is a single line."""


def unknown_name(kind: str, name: str, valid) -> UnnoiseError:
    """Error for a name that is not in a registry, listing the valid choices."""
    choices = ", ".join(sorted(valid))
    return UnnoiseError(f"unknown {kind} {name!r}; valid: {choices}")
