"""Driving ComfyUI from outside it: HTTP client, embedded host, job planning, batch scheduler (no node loads these)."""
