"""sendMail, recorded for the admin API (the M4/M5 notices)."""

from __future__ import annotations

import httpx
from emulator_support import ALICE, ALICE_MAIL

from devstack.graph_emulator import GraphEmulator


async def test_send_mail_is_recorded(http: httpx.AsyncClient, emu: GraphEmulator) -> None:
    message = {
        "subject": "Hello",
        "body": {"contentType": "Text", "content": "Hi"},
        "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}],
    }
    response = await http.post(f"/users/{ALICE}/sendMail", json={"message": message})
    assert response.status_code == 202
    mail = (await http.get(f"{emu.admin_url}/mail")).json()
    assert [m["message"]["subject"] for m in mail] == ["Hello"]
    assert mail[0]["from"] == ALICE_MAIL
