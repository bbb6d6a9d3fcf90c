"""The live surface: the event hub, the websockets and the long poll of the event log.

It sits above the domains: it reads the log (``app.events``) and asks the domains' services
for the snapshots it sends; no domain imports it (``make layers``).
"""
