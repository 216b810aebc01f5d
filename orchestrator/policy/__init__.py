"""Decisions (docs/decisions.md): who may be served which model where, and why not.

``rules`` is the reference semantics for one triple; ``table`` compiles a fleet into the fast
route table; ``explain`` and ``impact`` build the user-facing answers on top.
"""
