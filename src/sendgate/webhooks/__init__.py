"""Meta's webhooks: verify, keep the gateway's state current from them, relay them to the app.

- `events`: a webhook body into typed events (inbound messages, statuses, preferences,
  template and account updates);
- `apply`: those events into the store (window, consent ledger, delivery status, catalog,
  account state);
- `receiver`: the aiohttp handlers (verification GET, signed POST, forwarding to the app);
- `templates`: the catalog sync from Graph's `message_templates`.

Their config keys (`webhooks`, `template_sync`, `alerts`) are `sendgate.options`: config owns them.
"""
