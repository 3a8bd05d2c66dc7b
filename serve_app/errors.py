"""The one HTTP error of the app: the API answers it as JSON, the web pages as a page."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error", "status", **fields}``."""

    def __init__(self, status: int, message: str, **fields):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        fields = dict(self.fields)
        headers = {
            **({"Retry-After": str(fields.pop("retry_after"))} if "retry_after" in fields else {}),
            **(headers or {}),
        }
        return JSONResponse(
            {"error": self.message, "status": self.status, **fields}, status_code=self.status, headers=headers or None
        )
