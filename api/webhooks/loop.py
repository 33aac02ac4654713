"""The delivery loop: scan for new events, claim due deliveries, sign and POST them, record the outcome.

Runs as a thread of the API process (``webhook_delivery_in_api``) or on its own:
``python -m api.webhooks.loop`` with the XTC_* settings. Everything it needs is in the database, so
any number of loops may run and a restarted one carries on where a dead one stopped.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from ..db.models import TenantWebhook, WebhookDelivery, utcnow
from ..db.session import session_scope
from ..settings import Settings, get_settings
from . import outbox, signing
from .urls import BadWebhookUrl, check_url

log = logging.getLogger("xtc.webhooks")


class DeliveryLoop:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        # Never follow redirects: a 3xx is a failed attempt (a redirect could point anywhere).
        self.http = httpx.Client(follow_redirects=False, timeout=settings.webhook_timeout_s)

    def run_once(self) -> int:
        url = self.settings.database_url
        with session_scope(url) as s:
            outbox.scan(s, self.settings, utcnow())
        with session_scope(url) as s:
            claimed = outbox.claim(s, self.settings, utcnow())  # committed before any request is sent
        for delivery_id in claimed:
            self.send(delivery_id)
        return len(claimed)

    def send(self, delivery_id: str) -> None:
        url = self.settings.database_url
        with session_scope(url) as s:
            d = s.get(WebhookDelivery, delivery_id)
            conf = s.get(TenantWebhook, d.tenant_id)
            target, body, event, secret = d.url, d.payload, d.event, conf.secret if conf else None
        started = time.perf_counter()
        status_code, error, permanent = None, None, False
        try:
            if not secret:
                raise BadWebhookUrl("the tenant has no signing secret")
            check_url(target, allow_private=self.settings.webhook_allow_private)
            headers = signing.headers(secret, delivery_id, int(time.time()), body, event)
            response = self.http.post(target, content=body.encode(), headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
                if response.is_redirect:
                    error += " (redirects are not followed)"
        except BadWebhookUrl as exc:
            error, permanent = str(exc), True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        with session_scope(url) as s:
            state = outbox.record(s, self.settings, delivery_id, utcnow(), status_code=status_code,
                                  error=error, duration_ms=(time.perf_counter() - started) * 1000,
                                  permanent=permanent)
        log.info("webhook %s %s -> %s (%s)", delivery_id, event, state, error or status_code)

    def run_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the database may be restarting: keep going
                log.exception("webhook delivery loop error")
                busy = 0
            if not busy:
                self.stopping.wait(self.settings.webhook_poll_s)

    def start(self) -> DeliveryLoop:
        self.thread = threading.Thread(target=self.run_forever, name="xtc-webhooks", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=self.settings.webhook_timeout_s + 5)
        self.http.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = DeliveryLoop(get_settings())
    log.info("webhook delivery loop started (polling every %.1f s)", loop.settings.webhook_poll_s)
    loop.run_forever()


if __name__ == "__main__":
    main()
