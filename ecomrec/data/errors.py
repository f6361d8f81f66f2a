"""Exceptions of the data layer: each names the file, what was expected, and how to fix it."""


class DataError(Exception):
    """Base class: input data is missing, corrupt or malformed."""


class DataFileMissingError(DataError, FileNotFoundError):
    """A required input file is not in the data directory."""


class ChecksumMismatchError(DataError):
    """A file's sha256 differs from every checksum known for it."""


class DataFormatError(DataError):
    """A file cannot be parsed, or lacks required columns or fields."""


class SchemaError(DataError):
    """A loaded frame violates its schema (types, ranges, uniqueness, references)."""
