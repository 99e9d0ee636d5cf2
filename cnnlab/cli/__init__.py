"""The ``cnnlab`` command line: thin commands over the library."""
