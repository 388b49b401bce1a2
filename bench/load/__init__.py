"""Load generators, one module per workload. Every loop has a fixed count and a deadline."""
