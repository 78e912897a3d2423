"""The contract matrix: every case of :mod:`spec.cases` × backend × check, one module per check."""
