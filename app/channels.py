"""Contact channels shared by agents' capacity, queues and contacts."""

from enum import StrEnum


class Channel(StrEnum):
    voice = "voice"
    chat = "chat"
    web = "web"
    app = "app"
    callback = "callback"
    email = "email"
    case = "case"
