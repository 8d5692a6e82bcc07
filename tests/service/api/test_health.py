from __future__ import annotations

from sqlalchemy import create_engine


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.json == {"status": "ready"}


def test_readyz_is_503_when_the_database_is_unreachable(app, client, tmp_path):
    app.extensions["db_engine"] = create_engine(f"sqlite:///{tmp_path}/missing-dir/x.sqlite3")
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json["error"]["code"] == "database_unavailable"
    assert client.get("/healthz").status_code == 200


def test_openapi_document_describes_the_api(client):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    doc = resp.json
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "ai-diary"
    paths = doc["paths"]
    assert {
        "/api/users",
        "/api/entries",
        "/api/entries/{entry_id}",
        "/api/entries/{entry_id}/ai/{feature}",
        "/healthz",
        "/readyz",
    } <= set(paths)
    assert set(paths["/api/entries/{entry_id}"]) == {"get", "patch", "delete"}
    schemas = doc["components"]["schemas"]
    assert {"EntryCreate", "AIResult", "ErrorBody"} <= set(schemas) and "ValidationErrorModel" not in schemas
    assert paths["/api/entries"]["post"]["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    feature = next(
        p for p in paths["/api/entries/{entry_id}/ai/{feature}"]["post"]["parameters"] if p["name"] == "feature"
    )
    assert set(feature["schema"]["enum"]) == {"summarize", "reflect", "mood"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for route, item in paths.items():
        for method, op in item.items():
            assert op["responses"]["500"]["content"]["application/json"]["schema"] == error_ref, (route, method)
            if "400" in op["responses"]:
                assert op["responses"]["400"]["content"]["application/json"]["schema"] == error_ref
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "500"}  # nothing to validate: no 400
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "500", "503"}
    assert {"400", "401", "404", "413", "500", "502", "503", "504"} <= set(
        paths["/api/entries/{entry_id}/ai/{feature}"]["post"]["responses"]
    )
    assert not [k for k in doc if k.startswith("x-")]


def test_unhandled_errors_are_500_json_without_a_stack_trace(app, client, caplog):
    def boom():
        raise RuntimeError("secret" + " detail from user input")

    app.add_url_rule("/boom", "boom", boom)
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert resp.json == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "Traceback" not in resp.get_data(as_text=True)
    assert "RuntimeError" in caplog.text and "secret detail" not in caplog.text


def test_no_html_doc_ui_or_static_routes(client):
    assert client.get("/api/").status_code == 404
    assert client.get("/static/x.js").status_code == 404
