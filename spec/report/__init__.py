"""The application on top of the truth: the cross-backend report (``python -m spec.report``, or
``make compare``), its speed section from the benchmarks, and its figures. Nothing in :mod:`spec`
outside this package imports it."""
