"""Errors of the routing domain."""

from app.errors import Conflict, Forbidden, InvalidInput, NotFound, register_constraint


class QueueNotFound(NotFound):
    def __init__(self, ref: object) -> None:
        super().__init__(f"queue {ref!r} does not exist")


class UnknownQueue(InvalidInput):
    def __init__(self, ref: object, field: str = "queue") -> None:
        super().__init__(f"{field}: queue {ref!r} does not exist", field=field)


class OverflowLoop(InvalidInput):
    """Following ``overflow_queue`` would come back to a queue already on the way: a contact
    nobody takes would be passed round the loop for ever."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(
            f"overflow_queue: {names[-1]!r} overflows back into itself: {' -> '.join(names)}",
            field="overflow_queue",
        )


class ChannelNotAccepted(InvalidInput):
    def __init__(self, queue: str, channel: str, accepted: list[str]) -> None:
        super().__init__(
            f"channel: queue {queue!r} does not take {channel!r} contacts "
            f"(it takes {', '.join(accepted)})",
            field="channel",
        )


class ContactNotFound(NotFound):
    def __init__(self, contact_id: int) -> None:
        super().__init__(f"contact {contact_id} does not exist")


class OfferNotFound(NotFound):
    def __init__(self, offer_id: int) -> None:
        super().__init__(f"offer {offer_id} does not exist")


class NotYourOffer(Forbidden):
    def __init__(self, offer_id: int) -> None:
        super().__init__(f"offer {offer_id} was made to another agent")


class NotYourContact(Forbidden):
    def __init__(self, contact_id: int) -> None:
        super().__init__(f"contact {contact_id} is handled by another agent")


class OfferClosed(Conflict):
    def __init__(self, offer_id: int, status: str) -> None:
        super().__init__(f"offer {offer_id} is {status}, no longer pending", status=status)


class ContactStateConflict(Conflict):
    def __init__(self, contact_id: int, status: str, action: str) -> None:
        super().__init__(f"contact {contact_id} is {status}; cannot {action} it", status=status)


class QueueFull(Conflict):
    """``queue`` is full; ``asked``, if another, is the queue asked for, whose overflow led
    there."""

    def __init__(self, queue: str, max_length: int, asked: str | None = None) -> None:
        if asked is not None and asked != queue:
            super().__init__(
                f"queue {asked!r} is full, and so is every queue it overflows to "
                f"(the last, {queue!r}, has {max_length} waiting)"
            )
            return
        super().__init__(f"queue {queue!r} is full ({max_length} waiting) and has no overflow")


register_constraint("uq_queues_name", "a queue with this name already exists")
register_constraint("uq_offers_contact_id_pending", "the contact already has a pending offer")
register_constraint("ck_queues_overflow_not_self", "a queue cannot overflow into itself")
