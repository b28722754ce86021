"""The pipeline DSL: immutable step specifications, checked when they are built.

One module per kind of specification or policy: the :class:`Step` base and
its constructors, agent steps, control flow, human input, pipelines; the
context and its patches; retries, checks and merges; type checks at ``>>``.
"""
