"""The ``trioflow`` command line: commands, input, loading pipeline files, reports."""
