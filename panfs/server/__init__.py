"""The drive server: Open API + upload host on loopback, with faults and counters.

Product code: the embedded default, and the ground truth of every test and
benchmark. Never imported by the filesystem core; only commands and tests start it.
"""
