"""The ``sovereign`` command line: one module per command group, one error boundary (app.main)."""
