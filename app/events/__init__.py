"""The append-only event log: its table, ``record`` and the gapless reader.

Low in the stack: every domain writes to it, and it imports none of them. Following the log
live (the hub, websockets, the long poll) is ``app.realtime``'s job.
"""
