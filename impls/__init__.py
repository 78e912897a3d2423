"""The three implementations of every spec: ``impls.torch``, ``impls.keras``, ``impls.jax``.

Each subpackage has the same modules, so they can be read side by side:
``models.py`` (the idiomatic model code), ``weights.py`` (canonical ⇄ native names and layouts),
``losses.py`` (the spec's losses with the framework's own functions) and ``backend.py`` (the
:class:`spec.backend.Backend` contract). A backend never imports another backend.
"""
