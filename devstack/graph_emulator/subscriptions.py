"""Graph routes for /subscriptions, including the notificationUrl validation handshake."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from devstack.graph_emulator.errors import GraphError, bad_request
from devstack.graph_emulator.http import GraphRequest, GraphResponse
from devstack.graph_emulator.notifier import Notifier, is_loopback_url
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.state import Subscription
from devstack.graph_emulator.timezones import format_instant, parse_instant

MAX_MINUTES = 10080  # Outlook event subscriptions without resource data (facts §1).
MIN_MINUTES = 45
MAX_CLIENT_STATE = 128
MAX_PER_MAILBOX = 1000
CHANGE_TYPES = ("created", "updated", "deleted")
_RESOURCE = re.compile(r"^/?users/([^/]+)/events/?$", re.IGNORECASE)
APPLICATION_ID = "3f6f8d2e-8c1a-4b7e-9d55-0e3a1a7c0001"


def _not_found() -> GraphError:
    return GraphError(404, "ResourceNotFound", "The object was not found.")


class SubscriptionsApi:
    def __init__(
        self,
        svc: GraphService,
        notifier: Notifier,
        validation_timeout: float = 10.0,
        allow_remote_urls: bool = False,
    ) -> None:
        self.svc = svc
        self.state = svc.state
        self.notifier = notifier
        self.validation_timeout = validation_timeout
        self.allow_remote_urls = allow_remote_urls
        svc.router.add("POST", "/subscriptions", self.create)
        svc.router.add("GET", "/subscriptions", self.list)
        svc.router.add("GET", "/subscriptions/{sub}", self.get)
        svc.router.add("PATCH", "/subscriptions/{sub}", self.patch)
        svc.router.add("DELETE", "/subscriptions/{sub}", self.delete)
        svc.router.add("POST", "/subscriptions/{sub}/reauthorize", self.reauthorize)

    def render(self, sub: Subscription, context: bool = True, client_state: bool = True) -> dict[str, Any]:
        """The subscription resource; listing leaves clientState out ("the clientState property value is
        not returned for security purposes", api/subscription-list.md). Create, get and update return it, as
        their documented examples show."""
        body: dict[str, Any] = {}
        if context:
            body["@odata.context"] = f"{self.svc.base_url}/$metadata#subscriptions/$entity"
        body.update(
            {
                "id": sub.id,
                "resource": sub.resource,
                "applicationId": sub.application_id,
                "changeType": ",".join(sub.change_types),
                "clientState": sub.client_state if client_state else None,
                "notificationUrl": sub.notification_url,
                "notificationQueryOptions": sub.notification_query_options,
                "lifecycleNotificationUrl": sub.lifecycle_url,
                "expirationDateTime": format_instant(sub.expiration),
                "creatorId": sub.creator_id,
                "includeResourceData": False,
                "latestSupportedTlsVersion": "v1_2",
                "encryptionCertificate": None,
                "encryptionCertificateId": None,
                "notificationUrlAppId": None,
                "notificationContentType": "application/json",
            }
        )
        return body

    def _find(self, sub_id: str) -> Subscription:
        self.notifier.purge_expired()
        with self.state.lock:
            sub = self.state.subscriptions.get(sub_id)
        if sub is None:
            raise _not_found()
        return sub

    def _expiration(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise bad_request("expirationDateTime is required.", code="InvalidRequest")
        expiration = parse_instant(value)
        now = self.svc.clock.now()
        if expiration > now + timedelta(minutes=MAX_MINUTES):
            raise GraphError(
                400,
                "ExtensionError",
                f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.",
            )
        # Documented: anything under 45 minutes from now becomes 45 minutes from now.
        return max(expiration, now + timedelta(minutes=MIN_MINUTES))

    def _check_url(self, url: Any, field: str) -> str:
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).hostname
        ):
            raise bad_request(f"{field} must be an absolute http(s) URL.", code="InvalidRequest")
        if not self.allow_remote_urls and not is_loopback_url(url):
            raise bad_request(
                f"The emulator only notifies loopback addresses; {field} is '{url}'.", code="InvalidRequest"
            )
        return url

    async def validate(self, url: str) -> str | None:
        """Graph's handshake: POST url?validationToken=...; returns None when the endpoint passed."""
        assert self.notifier.session is not None
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        )
        separator = "&" if urlsplit(url).query else "?"
        target = URL(f"{url}{separator}validationToken={quote(token, safe='')}", encoded=True)
        try:
            async with self.notifier.session.post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.validation_timeout),
            ) as response:
                text = await response.text()
                if response.status != 200:
                    return f"returned status {response.status}"
                if response.content_type != "text/plain":
                    return f"returned Content-Type {response.content_type!r}, expected text/plain"
                if text != token:
                    return "did not echo the URL-decoded validation token"
                return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"could not be reached ({type(exc).__name__})"

    async def _validate_or_fail(self, url: str) -> None:
        problem = await self.validate(url)
        if problem is not None:
            # subscription-post-subscriptions.md: "If validation fails, the request to create the subscription
            # returns a 400 Bad Request error"; Graph's code for it is InvalidRequest.
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                f"validation request. The endpoint {problem}.",
            )

    async def create(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        body = req.body if isinstance(req.body, dict) else None
        if body is None:
            raise bad_request("Empty Payload. JSON content expected.", code="BadRequest")
        resource = body.get("resource")
        found = _RESOURCE.match(resource) if isinstance(resource, str) else None
        if found is None:
            if isinstance(resource, str) and resource.lstrip("/").lower().startswith("me/"):
                raise bad_request(
                    "/me request is only valid with delegated authentication flow.", code="BadRequest"
                )
            raise bad_request(
                f"Resource '{resource}' is not supported by the emulator; use /users/{{id}}/events.",
                code="InvalidRequest",
            )
        mailbox = self.state.mailbox(found.group(1))
        change_types = [part.strip() for part in str(body.get("changeType") or "").split(",") if part.strip()]
        if not change_types or any(part not in CHANGE_TYPES for part in change_types):
            raise bad_request(f"Invalid changeType '{body.get('changeType')}'.", code="InvalidRequest")
        if body.get("includeResourceData"):
            raise bad_request(
                "The emulator does not support rich notifications (includeResourceData).",
                code="InvalidRequest",
            )
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
        ):
            raise bad_request(
                f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.",
                code="InvalidRequest",
            )
        notification_url = self._check_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = self._check_url(lifecycle_url, "lifecycleNotificationUrl")
        expiration = self._expiration(body.get("expirationDateTime"))
        self._check_conflicts(mailbox.id, tuple(change_types), notification_url)
        await self._validate_or_fail(notification_url)
        if lifecycle_url is not None:
            await self._validate_or_fail(lifecycle_url)
        sub = Subscription(
            id=str(uuid.uuid4()),
            resource=resource,  # type: ignore[arg-type]
            mailbox_id=mailbox.id,
            change_types=tuple(change_types),
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            expiration=expiration,
            client_state=client_state,
            application_id=APPLICATION_ID,
            creator_id=mailbox.id,
            notification_query_options=body.get("notificationQueryOptions"),
        )
        with self.state.lock:
            self._check_conflicts(mailbox.id, sub.change_types, notification_url)
            self.state.subscriptions[sub.id] = sub
        return GraphResponse(201, self.render(sub))

    def _check_conflicts(self, mailbox_id: str, change_types: tuple[str, ...], url: str) -> None:
        self.notifier.purge_expired()
        with self.state.lock:
            mine = [s for s in self.state.subscriptions.values() if s.mailbox_id == mailbox_id]
            if len(mine) >= MAX_PER_MAILBOX:
                raise GraphError(403, "ExtensionError", "The mailbox has reached its subscription quota.")
            for other in mine:
                if set(other.change_types) == set(change_types) and other.notification_url == url:
                    raise GraphError(
                        409,
                        "ExtensionError",
                        "A subscription with the same resource, changeType and notificationUrl "
                        f"already exists ('{other.id}').",
                    )

    async def list(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        self.notifier.purge_expired()
        with self.state.lock:
            values = [
                self.render(s, context=False, client_state=False) for s in self.state.subscriptions.values()
            ]
        return GraphResponse(
            200, {"@odata.context": f"{self.svc.base_url}/$metadata#subscriptions", "value": values}
        )

    async def get(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        return GraphResponse(200, self.render(self._find(params["sub"])))

    async def patch(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        sub = self._find(params["sub"])
        body = req.body if isinstance(req.body, dict) else {}
        if "lifecycleNotificationUrl" in body:
            raise bad_request(
                "lifecycleNotificationUrl can't be added or changed by PATCH; "
                "delete and re-create the subscription.",
                code="InvalidRequest",
            )
        unknown = set(body) - {"expirationDateTime", "notificationUrl", "@odata.type"}
        if unknown:
            raise bad_request(
                f"Only expirationDateTime and notificationUrl can be updated, not {sorted(unknown)}."
            )
        expiration = (
            self._expiration(body["expirationDateTime"]) if "expirationDateTime" in body else sub.expiration
        )
        url = sub.notification_url
        if "notificationUrl" in body and body["notificationUrl"] != sub.notification_url:
            url = self._check_url(body["notificationUrl"], "notificationUrl")
            await self._validate_or_fail(url)
        with self.state.lock:
            sub.expiration, sub.notification_url = expiration, url
        return GraphResponse(200, self.render(sub))

    async def delete(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        sub = self._find(params["sub"])
        with self.state.lock:
            self.state.subscriptions.pop(sub.id, None)
        return GraphResponse(204)

    async def reauthorize(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        self._find(params["sub"])
        return GraphResponse(204)
