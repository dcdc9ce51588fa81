"""The admin API: consent, templates, inbound window, decision log and policy reload."""
