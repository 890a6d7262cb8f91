"""schemathesis hooks of test/api-schemathesis.test.ts (loaded through SCHEMATHESIS_HOOKS).

A paging cursor is valid only as the `next` of a page of the same query: the OpenAPI document says
so in words and gives its alphabet, but no JSON Schema can say "a value this API issued for these
other parameters". So a case generated as valid that carries a cursor gets a real one: the first
page of the same query (limit 1) is fetched and its `next` put in; when that query has no second
page, the case goes without a cursor. Cases generated as invalid keep whatever cursor they drew,
and the API must refuse them like any other bad input.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["TICKFLOW_API_URL"]


def _wire(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    query = case.query
    if not query or "cursor" not in query or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    first = {k: _wire(v) for k, v in query.items() if k not in ("cursor", "limit", "format")}
    first["limit"] = "1"
    res = requests.get(BASE_URL + case.operation.path, params=first, headers={"accept": "application/json"}, timeout=30)
    nxt = res.json().get("next") if res.status_code == 200 else None
    if isinstance(nxt, str):
        query["cursor"] = nxt
    else:
        del query["cursor"]
