class ImportDataError(ValueError):
    """A source file is malformed or unsupported; the message starts with the file's path."""
