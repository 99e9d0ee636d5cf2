"""The one error type for unreadable or mismatched files."""


class ModelFileError(ValueError):
    """A model, checkpoint or safetensors file that cannot be read or does not fit.

    The message says which file, what is wrong with it and what to do.
    """
