"""triptych's framework-neutral truth: specs, canonical parameters, the float64 judge, data and the
backend contract. Imports nothing but NumPy and the standard library."""
