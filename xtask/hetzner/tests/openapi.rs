//! The checker the stand-in API uses: it must catch what the OpenAPI
//! description forbids, or a green upload test would prove little.

mod common;

use common::openapi::{check_request, check_response};
use common::pattern::is_match;
use serde_json::json;

/// `check_request` of `body` finds a problem containing each of `expected`
/// (none when `expected` is empty).
#[track_caller]
fn check(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: serde_json::Value,
    expected: &[&str],
) {
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let errs = check_request(method, path, &query, Some(&body));
    if expected.is_empty() {
        assert!(errs.is_empty(), "{errs:#?}");
    }
    for e in expected {
        assert!(errs.iter().any(|x| x.contains(e)), "no `{e}` in {errs:#?}");
    }
}

#[test]
fn patterns_of_the_description() {
    let label = r"^(()|[a-z0-9A-Z]|([a-z0-9A-Z][a-z0-9A-Z\._-]{0,61}[a-z0-9A-Z]))$";
    for ok in ["", "a", "upload", "a.b_c-d", &"x".repeat(63)] {
        assert!(is_match(label, ok), "{ok}");
    }
    for bad in ["-a", "a-", "a b", &"x".repeat(64)] {
        assert!(!is_match(label, bad), "{bad}");
    }
    let name = "^[a-z0-9]+(-?[a-z0-9]*)*$";
    assert!(is_match(name, "fsn1-dc14"));
    assert!(!is_match(name, "Fsn1"));
    assert!(!is_match(name, "-x"));
}

#[test]
fn requests_are_checked_against_the_whole_schema() {
    let key = json!({"name": "k", "public_key": "ssh-ed25519 AAAA x", "labels": {"a": "b"}});
    check("POST", "/ssh_keys", &[], key, &[]);
    check(
        "GET",
        "/images",
        &[("type", "snapshot"), ("page", "1"), ("per_page", "50")],
        json!({}),
        &[],
    );
    check(
        "GET",
        "/images",
        &[("per_page", "many")],
        json!({}),
        &["query `per_page`: expected integer"],
    );
    check(
        "GET",
        "/images",
        &[("type", "floppy")],
        json!({}),
        &["not in"],
    );
    check(
        "GET",
        "/images",
        &[("colour", "red")],
        json!({}),
        &["not declared"],
    );
    check("GET", "/servers/abc", &[], json!({}), &["path `id`"]);
    check(
        "GET",
        "/servers/9007199254740992",
        &[],
        json!({}),
        &["above the maximum"],
    );
    check(
        "POST",
        "/ssh_keys",
        &[],
        json!({"name": "k"}),
        &["missing required `public_key`"],
    );
}

#[test]
fn responses_are_checked_for_formats_and_bounds() {
    let key = |created: &str| {
        json!({"ssh_key": {"id": 1, "name": "k", "fingerprint": "b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f",
            "public_key": "ssh-ed25519 AAAA x", "labels": {}, "created": created}})
    };
    assert_eq!(
        check_response(
            "POST",
            "/ssh_keys",
            201,
            Some(&key("2026-11-24T10:00:00+00:00"))
        ),
        Vec::<String>::new()
    );
    let errs = check_response("POST", "/ssh_keys", 201, Some(&key("yesterday")));
    assert!(
        errs.iter().any(|e| e.contains("not an RFC 3339 date-time")),
        "{errs:#?}"
    );
}
