"""panfs: mount a cloud drive (Aliyun Drive Open API) as a local filesystem.

Writes land in a local cache at disk speed and are uploaded as strictly
sequential, hash-verified multipart parts; every step is journaled so a crash
never loses data and never re-sends more than the part that was in flight.
"""

__version__ = "0.1.0"
