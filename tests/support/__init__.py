"""Shared test machinery: real processes on loopback, started and always stopped."""
