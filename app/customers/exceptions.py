"""Errors of the customers domain."""

from app.errors import InvalidInput, NotFound, register_constraint


class CustomerNotFound(NotFound):
    def __init__(self, customer_id: int) -> None:
        super().__init__(f"customer {customer_id} does not exist")


class InvalidCustomer(InvalidInput):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)


register_constraint("uq_customers_phone", "a customer with this phone number already exists")
register_constraint("uq_customers_id_number", "a customer with this ID number already exists")
register_constraint(
    "fk_customers_relationship_manager_id_agents", "the relationship manager does not exist"
)
