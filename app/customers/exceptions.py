"""Errors of the customers domain."""

from app.agents.exceptions import NotAllowed
from app.errors import InvalidInput, NotFound, register_constraint

PHONE_CONSTRAINT = "uq_customers_phone"


class CustomerNotFound(NotFound):
    def __init__(self, customer_id: int) -> None:
        super().__init__(f"customer {customer_id} does not exist")


class InvalidCustomer(InvalidInput):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)


def fields_not_allowed(fields: list[str], *, verb: str) -> NotAllowed:
    """The 403 for a role that may not ``verb`` (set, change) these fields, naming each."""
    message = f"only supervisors and admins {verb} this field"
    return NotAllowed(
        f"only supervisors and admins {verb} {', '.join(fields)}",
        fields=[{"field": field, "message": message} for field in fields],
    )


# Neither message names the customer holding the number, nor any part of it: a conflict is
# all an agent may learn, and that much is counted and recorded (app/customers/lookups.py).
register_constraint(PHONE_CONSTRAINT, "a customer with this phone number already exists")
register_constraint("uq_customers_id_number", "a customer with this ID number already exists")
register_constraint(
    "fk_customers_relationship_manager_id_agents", "the relationship manager does not exist"
)
