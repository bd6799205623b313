"""Error types that map onto the CLI's exit codes (1 = build failed, 2 = bad input)."""


class AtlasError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class InputError(AtlasError):
    """Bad input from the user: manifest, data file or model source. Exit code 2."""

    exit_code = 2


class ManifestError(InputError):
    """A manifest failed validation; the message names the file, the key and what was expected."""

    def __init__(self, path: str, key: str, message: str):
        self.path, self.key = path, key
        self.problems: list[ManifestError] = [self]
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")

    @classmethod
    def collect(cls, problems: list["ManifestError"]) -> "ManifestError":
        """One error standing for several: the first's path and key, every problem's line in the message."""
        first = problems[0]
        err = cls(first.path, first.key, "")
        err.problems = list(problems)
        err.args = ("\n".join(str(p) for p in problems),)
        return err


class SourceError(InputError):
    """A model or dataset source could not be loaded."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"cannot load {source!r}: {reason}")


class SchemaVersionError(AtlasError):
    """An exported file was written by another schema version."""
