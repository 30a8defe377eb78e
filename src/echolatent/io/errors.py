"""The error raised for bad input files."""


class InputError(ValueError):
    """Bad input: the message names the file (and field) and what is wrong.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The offending file.
    message : str
        What is wrong with it.
    """

    def __init__(self, path, message: str):
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(message if path is None else f"{path}: {message}")
