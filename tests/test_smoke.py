from tests.fixtures.factories import Api, expect


async def test_admin_can_sign_in_and_read_itself(api: Api) -> None:
    assert api.me["role"] == "admin"
    body = expect(await api.get("/health/ready"), 200)
    assert body["status"] == "ok"
