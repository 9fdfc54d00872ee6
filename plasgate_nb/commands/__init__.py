"""Subcommands of the ``plasgate-nb`` command line, one module each (thin faces over the library)."""
