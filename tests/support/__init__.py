"""Helpers shared by the test suites (data sets, fakes)."""
