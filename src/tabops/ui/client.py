"""The UI's HTTP client of the tabops API: one method per call the pages make.

Errors come back as :class:`ApiError`, carrying the API's structured error
(``{"error": {"code", "message", "details": [{"field", "reason", "row"}]}}``), or a
transport failure described in words, so pages can show what went wrong where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["ApiClient", "ApiError", "Issue"]


@dataclass(frozen=True)
class Issue:
    """One problem the API found: the field, the reason, and the batch row if any."""

    field: str
    reason: str
    row: int | None = None


@dataclass
class ApiError(Exception):
    """A call that did not succeed: its HTTP status (0 when the API was not reached)."""

    status: int
    code: str
    message: str
    details: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    @property
    def auth(self) -> bool:
        """The key was missing, wrong, or lacks the role."""
        return self.status in (401, 403)

    def for_field(self, name: str) -> list[str]:
        """Reasons given for a field (``Age`` matches ``Age`` and ``records[0].Age``)."""
        return [d.reason for d in self.details if d.field == name or d.field.endswith(f".{name}")]


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        info = body["error"]
        details = [
            Issue(str(d.get("field", "")), str(d.get("reason", "")), d.get("row"))
            for d in info.get("details") or []
        ]
        return ApiError(response.status_code, str(info["code"]), str(info["message"]), details)
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:300] or response.reason_phrase
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")


class ApiClient:
    """Calls the tabops API.

    Args:
        base_url: Where the API answers (``http://127.0.0.1:8000``).
        api_key: The key sent as a bearer token, or None.
        timeout_s: Timeout of each call.
        transport: An httpx transport (tests of the UI use the real API; this is for
            callers that need their own).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(
                0, "timeout", f"the API at {self.base_url} did not answer in time"
            ) from None
        except httpx.TransportError as exc:
            raise ApiError(
                0, "unreachable", f"cannot reach the API at {self.base_url}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --- use cases and predictions ------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """``GET /ready`` (its body, whether ready or not)."""
        try:
            response = self._http.get("/ready")
        except httpx.TransportError as exc:
            raise ApiError(
                0, "unreachable", f"cannot reach the API at {self.base_url}: {exc}"
            ) from None
        body: dict[str, Any] = response.json()
        return body

    def usecases(self) -> list[dict[str, Any]]:
        """Every use case the API serves, with its champion."""
        result: list[dict[str, Any]] = self._call("GET", "/usecases")
        return result

    def usecase(self, name: str) -> dict[str, Any]:
        """One use case: spec, champion, threshold, metrics and an example record."""
        result: dict[str, Any] = self._call("GET", f"/usecases/{name}")
        return result

    def predict(self, name: str, record: dict[str, Any], explain: bool = False) -> dict[str, Any]:
        """Score one record (with its explanation if ``explain``)."""
        params = {"explain": "true"} if explain else {}
        result: dict[str, Any] = self._call(
            "POST", f"/usecases/{name}/predict", json=record, params=params
        )
        return result

    def predict_batch(self, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Score records in one call (all or nothing: a bad row fails the call)."""
        result: dict[str, Any] = self._call(
            "POST", f"/usecases/{name}/predict", json={"records": records}
        )
        return result

    def predict_by_id(self, name: str, entity_id: str, explain: bool = False) -> dict[str, Any]:
        """Score the entity stored under this id in the use case's table."""
        params = {"explain": "true"} if explain else {}
        result: dict[str, Any] = self._call(
            "POST", f"/usecases/{name}/predict/{entity_id}", params=params
        )
        return result

    def feedback(self, name: str, items: list[dict[str, Any]]) -> int:
        """Send actual outcomes (all or nothing); the number recorded."""
        result: dict[str, Any] = self._call("POST", f"/usecases/{name}/feedback", json=items)
        return int(result["recorded"])

    # --- monitoring ---------------------------------------------------------------------

    def summary(self, name: str, window: str) -> dict[str, Any]:
        """The dashboard figures over a window (``24h``, ``7d``, ``all``)."""
        result: dict[str, Any] = self._call(
            "GET", f"/usecases/{name}/summary", params={"window": window}
        )
        return result

    def drift(self, name: str, window: int | None = None) -> dict[str, Any]:
        """A drift report with per-feature histograms."""
        params = {"window": window} if window else {}
        result: dict[str, Any] = self._call("GET", f"/usecases/{name}/drift", params=params)
        return result

    def explanations(self, name: str, window: int | None = None) -> dict[str, Any]:
        """The global view of the recorded explanations (live influence, training
        importance)."""
        params = {"window": window} if window else {}
        result: dict[str, Any] = self._call("GET", f"/usecases/{name}/explanations", params=params)
        return result

    def drift_history(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Stored drift runs, newest first."""
        result: list[dict[str, Any]] = self._call(
            "GET", f"/usecases/{name}/drift/history", params={"limit": limit}
        )
        return result

    def performance(self, name: str, window: int | None = None) -> dict[str, Any]:
        """Live quality from feedback, the label-free estimate and the hold-out figures."""
        params = {"window": window} if window else {}
        result: dict[str, Any] = self._call("GET", f"/usecases/{name}/performance", params=params)
        return result

    def predictions(self, name: str, **filters: Any) -> dict[str, Any]:
        """A page of recorded predictions (admin key), newest first."""
        params = {k: v for k, v in filters.items() if v is not None and v != ""}
        result: dict[str, Any] = self._call("GET", f"/usecases/{name}/predictions", params=params)
        return result

    # --- models -------------------------------------------------------------------------

    def models(self, name: str) -> list[dict[str, Any]]:
        """Every registered version, newest first (admin key)."""
        result: list[dict[str, Any]] = self._call("GET", f"/usecases/{name}/models")
        return result

    def train(self, name: str, force: bool = False) -> dict[str, Any]:
        """Start a training job (admin key)."""
        result: dict[str, Any] = self._call(
            "POST", f"/usecases/{name}/train", json={"force": force}
        )
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        """A training job's state and progress."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}")
        return result

    def jobs(self, name: str, limit: int = 10) -> list[dict[str, Any]]:
        """The use case's training jobs, newest first."""
        result: list[dict[str, Any]] = self._call(
            "GET", "/jobs", params={"usecase": name, "limit": limit}
        )
        return result

    def promote(self, name: str, version: str, alias: str = "champion") -> dict[str, Any]:
        """Make a version champion (or roll back to it), or challenger."""
        result: dict[str, Any] = self._call(
            "POST", f"/usecases/{name}/models/{version}/promote", params={"alias": alias}
        )
        return result

    def drop_challenger(self, name: str) -> None:
        """Stop shadow scoring."""
        self._call("DELETE", f"/usecases/{name}/models/challenger")

    def compare(self, name: str, window: int = 1000) -> dict[str, Any]:
        """Champion against challenger on the same live requests."""
        result: dict[str, Any] = self._call(
            "GET", f"/usecases/{name}/models/compare", params={"window": window}
        )
        return result
