//! The OpenAPI checker, on real operations of GitHub's description and on a small hand-written one.

use kfops_scm::github::openapi::{HttpRequest, Spec};
use serde_json::{Value, json};

fn spec() -> &'static Spec {
    Spec::github().unwrap_or_else(|e| panic!("{e}"))
}

fn request<'a>(method: &'a str, path: &'a str, query: Option<&'a str>, body: &'a [u8]) -> HttpRequest<'a> {
    let content_type = (!body.is_empty()).then_some("application/json");
    HttpRequest { method, path, query, content_type, accept: Some("application/vnd.github+json"), body }
}

/// The violations of a request, as `location: message` lines.
fn problems(req: HttpRequest<'_>) -> Vec<String> {
    match spec().check_request(&req) {
        Ok(_) => Vec::new(),
        Err(v) => v.iter().map(|v| format!("{}: {}", v.location, v.message)).collect(),
    }
}

#[test]
fn requests_are_routed_to_their_operations() {
    let cases = [
        ("GET", "/repos/acme/churn/pulls/7", "pulls/get"),
        ("PATCH", "/repos/acme/churn/pulls/7", "pulls/update"),
        ("PUT", "/repos/acme/churn/pulls/7/merge", "pulls/merge"),
        ("GET", "/repos/acme/churn/collaborators/alice/permission", "repos/get-collaborator-permission-level"),
        ("PATCH", "/repos/acme/churn/issues/comments/5", "issues/update-comment"),
        ("GET", "/repos/acme/churn/issues/5/comments", "issues/list-comments"),
        ("DELETE", "/repos/acme/churn/issues/5/labels/Deployed%20to%20production", "issues/remove-label"),
        ("GET", "/repos/acme/churn/installation", "apps/get-repo-installation"),
        ("POST", "/app/installations/9/access_tokens", "apps/create-installation-access-token"),
    ];
    for (method, path, want) in cases {
        // Operations that need a body still match (the violation names them).
        let id = match spec().check_request(&request(method, path, None, b"")) {
            Ok(m) => m.operation_id,
            Err(v) => {
                assert_eq!(v[0].location, "body", "{path}: {v:?}");
                v[0].operation.clone()
            }
        };
        assert_eq!(id, want, "{method} {path}");
    }
    // Several variables in one segment, and percent-decoding of path parameters.
    let m = spec()
        .check_request(&request("GET", "/repos/acme/churn/compare/release%2F1.0...0123abc", None, b""))
        .expect("compare");
    assert_eq!(
        (m.operation_id.as_str(), m.param("base"), m.param("head")),
        ("repos/compare-commits", "release/1.0", "0123abc")
    );
    let m = spec()
        .check_request(&request("DELETE", "/repos/acme/churn/issues/5/labels/Deployed%20to%20production", None, b""))
        .expect("remove-label");
    assert_eq!(m.param("name"), "Deployed to production");
}

#[test]
fn paths_methods_parameters_and_headers_are_checked() {
    let unknown = problems(request("GET", "/repos/acme/churn/nothing-here/1", None, b""));
    assert!(unknown[0].starts_with("path: no operation"), "{unknown:?}");
    let method = problems(request("DELETE", "/repos/acme/churn/pulls/7", None, b""));
    assert!(method[0].contains("not with DELETE") && method[0].contains("GET"), "{method:?}");
    let typed = problems(request("GET", "/repos/acme/churn/pulls/seven", None, b""));
    assert_eq!(typed, ["path.pull_number: expected integer, got string"]);
    assert_eq!(problems(request("GET", "/search/issues", None, b"")), ["query.q: required parameter is missing"]);
    let query = problems(request("GET", "/search/issues", Some("q=is%3Apr&per_page=many&colour=red"), b""));
    assert_eq!(
        query,
        [
            "query.per_page: expected integer, got string",
            "query.colour: the operation declares no such query parameter"
        ]
    );
    let order = problems(request("GET", "/search/issues", Some("q=x&order=sideways"), b""));
    assert!(order[0].starts_with("query.order: \"sideways\" is not one of"), "{order:?}");
    assert!(
        problems(request("GET", "/search/issues", Some("q=repo:a/b+label:%22x+y%22&per_page=100&page=2"), b""))
            .is_empty()
    );
    let mut html = request("GET", "/repos/acme/churn/pulls/7", None, b"");
    html.accept = Some("text/html");
    assert!(problems(html)[0].starts_with("header.accept"));
    let mut text = request("POST", "/repos/acme/churn/issues/7/comments", None, br#"{"body":"hi"}"#);
    text.content_type = Some("text/plain");
    assert!(problems(text)[0].starts_with("header.content-type"));
    let no_body = problems(request("GET", "/repos/acme/churn/pulls/7", None, b"{}"));
    assert!(no_body[0].starts_with("body: the operation takes no request body"), "{no_body:?}");
    assert_eq!(problems(request("POST", "/repos/acme/churn/issues/7/comments", None, b"{")).len(), 1);
}

#[test]
fn request_bodies_are_validated_against_real_operations() {
    let valid: &[(&str, &str, Value)] = &[
        ("POST", "/repos/a/b/issues/1/comments", json!({ "body": "hello" })),
        ("PATCH", "/repos/a/b/issues/comments/2", json!({ "body": "edited" })),
        ("POST", "/repos/a/b/issues/comments/2/reactions", json!({ "content": "+1" })),
        ("POST", "/repos/a/b/labels", json!({ "name": "deployed", "color": "0e8a16" })),
        ("POST", "/repos/a/b/issues/1/labels", json!({ "labels": ["x", "y"] })),
        ("POST", "/repos/a/b/issues/1/labels", json!({ "labels": [{ "name": "x" }] })),
        ("PUT", "/repos/a/b/pulls/1/merge", json!({ "sha": "abc", "merge_method": "squash" })),
        ("PATCH", "/repos/a/b/pulls/1", json!({ "state": "closed" })),
    ];
    for (method, path, body) in valid {
        let bytes = body.to_string();
        assert_eq!(
            problems(request(method, path, None, bytes.as_bytes())),
            Vec::<String>::new(),
            "{method} {path} {body}"
        );
    }
    let invalid: &[(&str, &str, Value, &str)] = &[
        ("POST", "/repos/a/b/issues/1/comments", json!({}), "body.body: required property is missing"),
        ("POST", "/repos/a/b/issues/1/comments", json!({ "body": 5 }), "body.body: expected string, got integer"),
        (
            "POST",
            "/repos/a/b/issues/comments/2/reactions",
            json!({ "content": "smile" }),
            "body.content: \"smile\" is not one of",
        ),
        (
            "PUT",
            "/repos/a/b/pulls/1/merge",
            json!({ "merge_method": "fast-forward" }),
            "body.merge_method: \"fast-forward\" is not one of",
        ),
        ("PATCH", "/repos/a/b/pulls/1", json!({ "state": "merged" }), "body.state: \"merged\" is not one of"),
        ("POST", "/repos/a/b/labels", json!({ "color": "fff" }), "body.name: required property is missing"),
        ("POST", "/repos/a/b/issues/1/labels", json!({ "labels": 5 }), "body: fits none of the"),
        // A bare array was accepted by older descriptions; 23.0.2 only takes `{"labels": [...]}`.
        ("POST", "/repos/a/b/issues/1/labels", json!(["x"]), "body: fits none of the 1 alternatives of oneOf"),
        ("POST", "/repos/a/b/issues/1/comments", json!("hello"), "body: expected object, got string"),
    ];
    for (method, path, body, want) in invalid {
        let bytes = body.to_string();
        let got = problems(request(method, path, None, bytes.as_bytes()));
        assert!(got.iter().any(|p| p.starts_with(want)), "{method} {path} {body}: want `{want}`, got {got:?}");
    }
}

#[test]
fn responses_are_checked_per_status_and_synthesized_shapes_fit() {
    let s = spec();
    let missing = s.check_response("pulls/get", 200, Some(&json!({ "number": 1 })));
    assert!(
        missing.iter().any(|v| v.location == "response.200.head" && v.message == "required property is missing"),
        "{missing:?}"
    );
    // Undeclared statuses may only carry GitHub's plain error object.
    assert!(s.check_response("pulls/get", 401, Some(&json!({ "message": "Bad credentials" }))).is_empty());
    assert!(!s.check_response("pulls/get", 201, Some(&json!({ "number": 1 }))).is_empty());
    assert!(!s.check_response("pulls/get", 200, None).is_empty());
    for (op, status) in [
        ("pulls/get", 200),
        ("issues/create-comment", 201),
        ("search/issues-and-pull-requests", 200),
        ("repos/compare-commits", 200),
        ("apps/get-repo-installation", 200),
        ("apps/create-installation-access-token", 201),
        ("repos/get-collaborator-permission-level", 200),
    ] {
        let schema = s.response_schema(op, status).expect("declared").expect("JSON");
        let value = s.synthesize(schema, None);
        assert!(s.validate(&value, schema, "").is_empty(), "{op}: {:?}", s.validate(&value, schema, ""));
        let overlaid = s.synthesize(schema, Some(&json!({ "url": "https://x.example/1" })));
        assert_eq!(overlaid["url"], "https://x.example/1");
    }
}

#[test]
fn the_json_schema_subset_on_a_small_description() {
    let doc = json!({
        "openapi": "3.0.3",
        "paths": {},
        "components": { "schemas": {
            "name": { "type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$" },
            "thing": {
                "type": "object",
                "required": ["name", "size"],
                "additionalProperties": false,
                "properties": {
                    "name": { "$ref": "#/components/schemas/name" },
                    "size": { "type": "integer", "minimum": 1, "maximum": 10 },
                    "note": { "type": ["string", "null"] },
                    "owner": { "type": "object", "nullable": true, "properties": { "id": { "type": "integer" } } },
                    "tags": { "type": "array", "items": { "enum": ["a", "b"] }, "maxItems": 2 },
                    "extra": { "type": "object", "additionalProperties": { "type": "boolean" } },
                    "either": { "anyOf": [{ "type": "string" }, { "type": "integer" }] },
                    "both": { "allOf": [
                        { "type": "object", "required": ["x"] },
                        { "type": "object", "required": ["y"] }
                    ] }
                }
            }
        } }
    });
    let s = Spec::from_value(doc).expect("spec");
    let schema = json!({ "$ref": "#/components/schemas/thing" });
    let ok = json!({ "name": "abc", "size": 3, "note": null, "owner": null, "tags": ["a", "b"],
                      "extra": { "k": true }, "either": 5, "both": { "x": 1, "y": 2 } });
    assert!(s.validate(&ok, &schema, "body").is_empty(), "{:?}", s.validate(&ok, &schema, "body"));
    let bad = json!({ "name": "ABCDE", "size": 11, "note": 1, "owner": { "id": "x" }, "tags": ["c", "a", "b"],
                       "extra": { "k": "yes" }, "either": true, "both": { "x": 1 }, "surprise": 1 });
    let got: Vec<String> = s.validate(&bad, &schema, "body").into_iter().map(|(l, m)| format!("{l}: {m}")).collect();
    let want = [
        "body.name: 5 characters, more than maxLength 4",
        "body.name: \"ABCDE\" does not match the pattern `^[a-z]+$`",
        "body.size: 11 is more than the maximum 10",
        "body.note: expected string or null, got integer",
        "body.owner.id: expected integer, got string",
        "body.tags: 3 items, more than maxItems 2",
        "body.tags[0]: \"c\" is not one of \"a\", \"b\"",
        "body.extra.k: expected boolean, got string",
        "body.either: fits none of the 2 alternatives of anyOf (first alternative: body.either: expected string, got boolean)",
        "body.both.y: required property is missing",
        "body.surprise: property not allowed (additionalProperties: false)",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing `{w}` in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    let short: Vec<String> = s
        .validate(&json!({ "name": "a", "size": 0 }), &schema, "")
        .into_iter()
        .map(|(l, m)| format!("{l}: {m}"))
        .collect();
    assert_eq!(short, ["name: 1 characters, fewer than minLength 2", "size: 0 is less than the minimum 1"]);
    let made = s.synthesize(&schema, Some(&json!({ "tags": ["b"] })));
    assert_eq!(made, json!({ "name": "xx", "size": 1, "tags": ["b"] }));
}
