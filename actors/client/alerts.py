"""Alert rules and firings over a running pipeline's controller: `PipelineClient(...).alerts`.

Blocking methods for the CLI and tools, `_async` ones for the API's event loop; failures arrive as the
pipeline's own errors (ConfigError naming the field, StreamNotFound, AlertNotFound, PipelineUnavailable).
"""

from __future__ import annotations

from typing import Any


class AlertClient:
    """Alert operations on the controller behind `client` (an actors.client.client.PipelineClient)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a rule {"stream_id", "prompt", "min_consecutive"?, "cooldown_s"?, "webhook"?}; its view."""
        return self._client._get("add_alert", spec)

    async def add_async(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await self._client._get_async("add_alert", spec)

    def list(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        return self._client._get("list_alerts", stream_id)

    async def list_async(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        return await self._client._get_async("list_alerts", stream_id)

    def get(self, rule_id: str) -> dict[str, Any]:
        return self._client._get("get_alert", rule_id)

    async def get_async(self, rule_id: str) -> dict[str, Any]:
        return await self._client._get_async("get_alert", rule_id)

    def delete(self, rule_id: str) -> None:
        self._client._get("delete_alert", rule_id)

    async def delete_async(self, rule_id: str) -> None:
        await self._client._get_async("delete_alert", rule_id)

    def events(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Retained firings with id > `after`, oldest first."""
        return self._client._get("alert_events", after, limit)

    async def events_async(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return await self._client._get_async("alert_events", after, limit)

    def stats(self) -> dict[str, Any]:
        return self._client._get("alert_stats")

    async def stats_async(self) -> dict[str, Any]:
        return await self._client._get_async("alert_stats")
