"""Test harnesses: real servers and processes the tests start (PostgreSQL, ...)."""
