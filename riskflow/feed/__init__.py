"""The officers' live alert feed: web page, JSON API (OpenAPI) and server-sent events."""
