"""sendMail, stored for inspection through the admin API (GET /admin/mail)."""

from __future__ import annotations

from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.timezones import format_instant


class MailApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        self.state = svc.state
        svc.router.add("POST", "/users/{user}/sendMail", self.send_mail)

    async def send_mail(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        mailbox = self.state.mailbox(params["user"])
        body = {str(k).lower(): v for k, v in (req.body if isinstance(req.body, dict) else {}).items()}
        message = body.get("message")
        if not isinstance(message, dict):
            raise bad_request("sendMail needs a message.", code="ErrorInvalidRequest")
        if (
            not message.get("toRecipients")
            and not message.get("ccRecipients")
            and not message.get("bccRecipients")
        ):
            raise bad_request(
                "At least one recipient is required, but none were found.", code="ErrorInvalidRecipients"
            )
        with self.state.lock:
            self.state.sent_mail.append(
                {
                    "from": mailbox.mail,
                    "mailbox_id": mailbox.id,
                    "message": message,
                    "saveToSentItems": body.get("savetosentitems", True),
                    "time": format_instant(self.svc.clock.now()),
                }
            )
        return GraphResponse(202)
