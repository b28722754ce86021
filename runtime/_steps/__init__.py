"""The step actors: one actor class per step kind, and what they share.

A run reaches a specification, :mod:`._dispatch` picks its actor, and the
actor runs it once: messages between parent and child, the common
restore-or-journal logic, fan-out for parallel/map/router, the cache and call info.
"""
