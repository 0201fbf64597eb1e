"""The OpenAPI 3.1 document of the feed's JSON API, served at ``/openapi.json``.

>>> doc = openapi_document()
>>> doc["openapi"], sorted(doc["paths"])[0]
('3.1.0', '/api/alerts')
"""

from __future__ import annotations

from typing import Any

from riskflow import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "429": {"$ref": "#/components/responses/TooManyFailures"},
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer", "minimum": 1}}
}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def openapi_document() -> dict[str, Any]:
    string = {"type": "string"}
    alert = {
        "type": "object",
        "description": "An alert record (riskflow.alert/v1) with its lifecycle state 处置状态.",
        "required": [
            "alert_id",
            "entity_id",
            "entity_kind",
            "region",
            "rule_id",
            "severity",
            "title_zh",
            "title_en",
            "event_time",
            "status",
            "seq",
        ],
        "properties": {
            "alert_id": string,
            "schema": string,
            "entity_id": string,
            "entity_kind": string,
            "entity_kind_zh": string,
            "region": {"type": "string", "description": "GB/T 2260 city code, e.g. 330100"},
            "region_en": string,
            "region_zh": string,
            "rule_id": string,
            "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
            "title_zh": string,
            "title_en": string,
            "dimension": string,
            "mode": {"type": "string", "enum": ["live", "shadow", "backtest"]},
            "evidence": {"type": "object"},
            "event_id": string,
            "event_time": {"type": "string", "description": "RFC 3339 event time of the triggering event"},
            "detected_at": string,
            "rule_pack_version": string,
            "model_version": string,
            "risk_level": {"type": "string", "enum": ["", "red", "orange", "yellow", "green"]},
            "risk_index": {"type": "number", "minimum": 0, "maximum": 100},
            "risk_tags": {"type": "array", "items": string},
            "risk_dimensions": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "index points per dimension (contagion: what a linked entity adds); they sum to "
                "risk_index within rounding",
            },
            "affected_people": {"type": "integer"},
            "affected_amount": {"type": "number"},
            "revision": {"type": "integer", "minimum": 1},
            "episode": {"type": ["object", "null"]},
            "status": {"type": "string", "enum": ["open", "acknowledged", "assigned", "snoozed", "resolved"]},
            "status_zh": string,
            "assignee": string,
            "snooze_until": string,
            "snooze_reason": string,
            "snooze_by": string,
            "updated_at": string,
            "seq": {"type": "integer", "description": "store-wide change number of the alert's last change"},
        },
    }
    audit = {
        "type": "object",
        "required": ["alert_id", "at", "actor", "action", "from_status", "to_status", "note"],
        "properties": {k: string for k in ("alert_id", "at", "actor", "action", "from_status", "to_status", "note")},
    }
    error = {"type": "object", "required": ["error", "message"], "properties": {"error": string, "message": string}}
    action_body = {
        "type": "object",
        "properties": {
            "note": {"type": "string", "description": "kept in the audit trail (at most RISKFLOW_FEED_MAX_NOTE_BYTES)"},
            "assignee": {"type": "string", "description": "assign: the officer (same limit)"},
            "reason": {"type": "string", "description": "snooze: why (same limit)"},
            "until": {"type": "string", "description": "snooze: RFC 3339 expiry, in the future, at most the max"},
        },
    }
    err_resp = lambda d: _json(_ref("Error"), d)  # noqa: E731
    case_paths = _case_paths(err_resp)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RiskFlow alert feed API 风险预警接口",
            "version": __version__,
            "description": "Alerts from the alert store, their lifecycle (ack / assign / resolve / snooze / "
            "reopen) and audit trail, per-entity risk history, and a live stream of changes. Every /api/ call "
            "needs a bearer token: viewer reads, officer acts, admin may also re-open resolved alerts. Wrong tokens "
            "are slowed per client address (429).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/meta": {
                "get": {
                    "operationId": "getMeta",
                    "summary": "Filter vocabularies (regions, levels, kinds, statuses, rules) and the caller",
                    "responses": {"200": _json({"type": "object"}, "vocabularies"), **_ERRORS},
                }
            },
            "/api/alerts": {
                "get": {
                    "operationId": "listAlerts",
                    "summary": "Alerts matching the filters, newest event first",
                    "parameters": [
                        _q("region", "city code, e.g. 330100"),
                        _q("level", "risk level", {"type": "string", "enum": ["red", "orange", "yellow", "green"]}),
                        _q("kind", "entity kind"),
                        _q("rule", "rule id"),
                        _q("status", "lifecycle status"),
                        _q("entity", "entity id"),
                        _q("order", "sort", {"type": "string", "enum": ["event_time", "risk_index", "seq"]}),
                        _q("limit", "at most this many (1-2000)", {"type": "integer", "minimum": 1, "maximum": 2000}),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["seq", "alerts"],
                                "properties": {
                                    "seq": {"type": "integer", "description": "pass as since= to /api/stream"},
                                    "alerts": {"type": "array", "items": _ref("Alert")},
                                },
                            },
                            "alerts",
                        ),
                        "400": err_resp("bad filter"),
                        **_ERRORS,
                    },
                }
            },
            "/api/alerts/{alert_id}": {
                "get": {
                    "operationId": "getAlert",
                    "summary": "One alert with its audit trail",
                    "parameters": [{"name": "alert_id", "in": "path", "required": True, "schema": string}],
                    "responses": {
                        "200": _json(
                            {
                                "allOf": [
                                    _ref("Alert"),
                                    {
                                        "type": "object",
                                        "properties": {"audit": {"type": "array", "items": _ref("AuditEntry")}},
                                    },
                                ]
                            },
                            "the alert",
                        ),
                        "404": err_resp("no such alert"),
                        **_ERRORS,
                    },
                }
            },
            "/api/alerts/{alert_id}/{action}": {
                "post": {
                    "operationId": "actOnAlert",
                    "summary": "Lifecycle action (officer role; re-opening a resolved alert needs admin)",
                    "parameters": [
                        {"name": "alert_id", "in": "path", "required": True, "schema": string},
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["ack", "assign", "resolve", "snooze", "reopen"]},
                        },
                    ],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": action_body}}},
                    "responses": {
                        "200": _json(_ref("Alert"), "the alert after the action"),
                        "400": err_resp("missing or bad argument (assignee, reason, until)"),
                        "404": err_resp("no such alert or action"),
                        "413": err_resp(
                            "`too_large`: note, assignee or reason above RISKFLOW_FEED_MAX_NOTE_BYTES (UTF-8), or "
                            "an over-large body; nothing is written"
                        ),
                        "409": err_resp("the alert's status does not allow this action"),
                        **_ERRORS,
                    },
                }
            },
            "/api/entities/{entity_id}": {
                "get": {
                    "operationId": "getEntity",
                    "summary": "An entity's alerts, risk-index history and episodes timeline",
                    "parameters": [{"name": "entity_id", "in": "path", "required": True, "schema": string}],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["entity_id", "alerts", "history", "episodes"],
                                "properties": {
                                    "entity_id": string,
                                    "alerts": {"type": "array", "items": _ref("Alert")},
                                    "history": {"type": "array", "items": {"type": "object"}},
                                    "episodes": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "the entity",
                        ),
                        "404": err_resp("no alerts for this entity"),
                        **_ERRORS,
                    },
                }
            },
            "/api/stream": {
                "get": {
                    "operationId": "streamAlerts",
                    "summary": "Server-sent events: `event: alert`, data = one changed Alert, id = its seq; "
                    "`event: case`, data = one changed Case (no id)",
                    "description": "EventSource cannot send headers, so this route also accepts ?token=. "
                    "Resume with ?since=SEQ or the Last-Event-ID header; case changes with ?case_since=CASE_SEQ "
                    "(the case_seq of /api/board or /api/cases). Without case_since, case changes from the "
                    "connection on are sent.",
                    "parameters": [
                        _q("since", "send changes after this change number first", {"type": "integer"}),
                        _q("case_since", "send case changes after this case change number first", {"type": "integer"}),
                        _q("token", "API token (alternative to the Authorization header)"),
                    ],
                    "responses": {
                        "200": {"description": "event stream", "content": {"text/event-stream": {"schema": string}}},
                        "400": err_resp("since or case_since is not an integer"),
                        "503": {
                            **err_resp(
                                "`too_many_streams`: the token's (RISKFLOW_FEED_MAX_STREAMS_PER_TOKEN) or the feed's "
                                "(RISKFLOW_FEED_MAX_STREAMS) live streams are at their limit"
                            ),
                            "headers": _RETRY_AFTER,
                        },
                        **_ERRORS,
                    },
                }
            },
            **case_paths,
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI document")},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "ok")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics of the feed and its alert sink (labels only, no ids)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Alert": alert, "AuditEntry": audit, "Error": error, **_case_schemas()},
            "responses": {
                "Unauthenticated": err_resp("no or unknown token"),
                "Forbidden": err_resp("the token's role may not do this"),
                "TooManyFailures": {
                    **err_resp(
                        "`too_many_failures`: too many wrong tokens from this client address; the token was not "
                        "checked (one that already worked from this address still does)"
                    ),
                    "headers": _RETRY_AFTER,
                },
            },
        },
    }


def _case_schemas() -> dict[str, Any]:
    string = {"type": "string"}
    case = {
        "type": "object",
        "description": "An institution's case 案件: one open case per institution at yellow or above, opened by "
        "the alert sink, with the level's disposal route 处置路径, checklist, due date and outcome.",
        "required": ["case_id", "entity_id", "status", "level", "due_at", "checklist", "overdue"],
        "properties": {
            **{
                k: string
                for k in [
                    "case_id",
                    "entity_id",
                    "entity_kind",
                    "entity_kind_zh",
                    "region",
                    "region_en",
                    "region_zh",
                    "level_zh",
                    "status_zh",
                    "route_en",
                    "route_zh",
                    "regulation",
                    "assignee",
                    "opened_at",
                    "due_at",
                    "first_action_at",
                    "closed_at",
                    "close_reason",
                    "closed_by",
                    "outcome_en",
                    "outcome_zh",
                    "first_alert_id",
                    "first_event_time",
                    "last_event_time",
                    "updated_at",
                ]
            },
            "status": {"type": "string", "enum": ["open", "assigned", "closed"]},
            "level": {"type": "string", "enum": ["red", "orange", "yellow"]},
            "outcome": {"type": "string", "enum": ["", "confirmed", "false_alarm", "rectified", "referred"]},
            "risk_index": {"type": "number"},
            "people": {"type": "integer", "description": "people affected 影响人数"},
            "amount": {"type": "number", "description": "CNY affected 影响金额"},
            "checklist": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"en": string, "zh": string, "done": {"type": "boolean"}, "by": string, "at": string},
                },
            },
            "overdue": {"type": "boolean", "description": "not closed and past its due date"},
            "seq": {"type": "integer", "description": "case change number"},
        },
    }
    entry = {
        "type": "object",
        "description": "One line of a case's log: its diary and audit trail (officer, action, note).",
        "properties": {k: string for k in ("case_id", "at", "actor", "action", "from_status", "to_status", "note")},
    }
    return {"Case": case, "CaseEntry": entry}


def _case_paths(err_resp: Any) -> dict[str, Any]:
    string = {"type": "string"}
    cid = {"name": "case_id", "in": "path", "required": True, "schema": string}
    detail = {
        "allOf": [
            _ref("Case"),
            {
                "type": "object",
                "properties": {
                    "log": {"type": "array", "items": _ref("CaseEntry")},
                    "alerts": {
                        "type": "array",
                        "description": "the case's alerts, each with `explanation`: rule names, rationale, "
                        "regulation, and the evidence as a sentence in English and Chinese",
                        "items": _ref("Alert"),
                    },
                    "regulations": {"type": "array", "items": string},
                },
            },
        ]
    }
    filters = [
        _q("status", "open, assigned or closed"),
        _q("level", "case level", {"type": "string", "enum": ["red", "orange", "yellow"]}),
        _q("region", "city code, e.g. 330100"),
        _q("kind", "entity kind"),
        _q("assignee", "assigned officer"),
        _q("overdue", "1: only cases past their due date"),
        _q("limit", "at most this many (1-5000)", {"type": "integer", "minimum": 1, "maximum": 5000}),
    ]
    return {
        "/api/board": {
            "get": {
                "operationId": "getBoard",
                "summary": "The risk board 风险看板: one row per institution, most urgent first, and per-city counts",
                "parameters": [f for f in filters if f["name"] != "status"],
                "responses": {
                    "200": _json({"type": "object", "required": ["rows", "cities"]}, "board rows and cities"),
                    "400": err_resp("bad filter"),
                    **_ERRORS,
                },
            }
        },
        "/api/cases": {
            "get": {
                "operationId": "listCases",
                "summary": "Cases matching the filters: open before closed, then level and index",
                "parameters": [*filters, _q("open", "1: only cases not closed"), _q("entity", "institution id")],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["cases"],
                            "properties": {"cases": {"type": "array", "items": _ref("Case")}},
                        },
                        "cases",
                    ),
                    "400": err_resp("bad filter"),
                    **_ERRORS,
                },
            }
        },
        "/api/cases/{case_id}": {
            "get": {
                "operationId": "getCase",
                "summary": "One case with its log, its alerts explained, and the regulations cited",
                "parameters": [cid],
                "responses": {"200": _json(detail, "the case"), "404": err_resp("no such case"), **_ERRORS},
            }
        },
        "/api/cases/{case_id}/report": {
            "get": {
                "operationId": "getCaseReport",
                "summary": "The hand-over report 处置建议: the case, its evidence timeline, regulations and diary",
                "parameters": [cid],
                "responses": {"200": _json(detail, "the report"), "404": err_resp("no such case"), **_ERRORS},
            }
        },
        "/api/rules/quality": {
            "get": {
                "operationId": "getRuleQuality",
                "summary": "Per rule: hits, cases opened and joined, officers' outcomes, confirmed share 确认率, "
                "median lead to the close, precision against the officers' labels (as `riskflow rules quality`)",
                "responses": {
                    "200": _json({"type": "object", "required": ["rules", "all"]}, "rule quality"),
                    **_ERRORS,
                },
            }
        },
        "/api/cases/{case_id}/{action}": {
            "post": {
                "operationId": "actOnCase",
                "summary": "Case action (officer role; reopen needs admin); written in the case log",
                "parameters": [
                    cid,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["assign", "note", "check", "close", "reopen"]},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "note": {"type": "string", "description": "at most RISKFLOW_FEED_MAX_NOTE_BYTES"},
                                    "assignee": {"type": "string", "description": "assign: the officer"},
                                    "outcome": {
                                        "type": "string",
                                        "enum": ["confirmed", "false_alarm", "rectified", "referred"],
                                        "description": "close: 确认风险 / 误报 / 整改完成 / 已移交",
                                    },
                                    "reason": {"type": "string", "description": "close: why"},
                                    "step": {"type": "integer", "minimum": 1, "description": "check: step number"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Case"), "the case after the action"),
                    "400": err_resp("missing or bad argument (assignee, note, outcome, reason, step)"),
                    "404": err_resp("no such case or action"),
                    "409": err_resp("the case's status does not allow this action"),
                    "413": err_resp("`too_large`: a text field above RISKFLOW_FEED_MAX_NOTE_BYTES; nothing is written"),
                    **_ERRORS,
                },
            }
        },
    }
