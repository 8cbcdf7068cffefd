//! Checks JSON against the Hetzner Cloud API's OpenAPI description
//! (`../shared/hetzner/hcloud-openapi.json`): the client's requests and the
//! stand-in's responses, so both follow Hetzner's shapes, not our guess.

use std::sync::OnceLock;

use serde_json::Value;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/hetzner/hcloud-openapi.json"
);

/// The parsed description (read once per test process).
pub fn spec() -> &'static Value {
    static SPEC_JSON: OnceLock<Value> = OnceLock::new();
    SPEC_JSON.get_or_init(|| {
        let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| {
            panic!("reading the Hetzner OpenAPI description {SPEC}: {e} (it lives in shared/hetzner beside the repository)")
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {SPEC}: {e}"))
    })
}

/// The operation for `method` and a concrete `path` (`/servers/42`): the
/// template with the most literal segments wins.
pub fn operation(method: &str, path: &str) -> Option<(&'static str, &'static Value)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let paths = spec().get("paths")?.as_object()?;
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in paths {
        let t: Vec<&str> = template.trim_matches('/').split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let fits = t.iter().zip(&segs).all(|(a, b)| {
            if a.starts_with('{') {
                true
            } else {
                literal += 1;
                a == b
            }
        });
        let Some(op) = item.get(method.to_ascii_lowercase()) else {
            continue;
        };
        if fits && best.is_none_or(|(l, _, _)| literal > l) {
            best = Some((literal, template.as_str(), op));
        }
    }
    best.map(|(_, t, op)| (t, op))
}

fn resolve(schema: &Value) -> &Value {
    let mut s = schema;
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match spec().pointer(r.trim_start_matches('#')) {
            Some(t) => s = t,
            None => return s,
        }
    }
    s
}

/// Problems of `value` against `schema` (empty: it conforms).
pub fn check(schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
    let schema = resolve(schema);
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            errs.push(format!("{at}: null where the schema does not allow it"));
        }
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(s, value, at, errs);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            let fits = any.iter().any(|s| {
                let mut e = Vec::new();
                check(s, value, at, &mut e);
                e.is_empty()
            });
            if !fits {
                errs.push(format!("{at}: matches none of {key}"));
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errs.push(format!("{at}: {value} not in {allowed:?}"));
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .or_else(|| schema.get("properties").map(|_| "object"));
    let ok = match ty {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(_) => true,
    };
    if !ok {
        errs.push(format!("{at}: expected {}, got {value}", ty.unwrap_or("?")));
        return;
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(items, v, &format!("{at}[{i}]"), errs);
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: missing required `{k}`"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => check(s, v, &format!("{at}.{k}"), errs),
                (None, Some(Value::Bool(false))) => errs.push(format!("{at}: unknown field `{k}`")),
                (None, Some(extra)) if extra.is_object() => {
                    check(extra, v, &format!("{at}.{k}"), errs)
                }
                (None, _) => {
                    if props.is_some() && schema.get("allOf").is_none() {
                        errs.push(format!("{at}: field `{k}` is not documented"));
                    }
                }
            }
        }
    }
}

fn json_schema(container: &Value) -> Option<&Value> {
    resolve(container).pointer("/content/application~1json/schema")
}

/// Problems of a request: unknown operation, undeclared query parameters,
/// a body that does not fit the request schema.
pub fn check_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let Some((template, op)) = operation(method, path) else {
        return vec![format!(
            "{method} {path}: no such operation in the API description"
        )];
    };
    let declared: Vec<String> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(resolve)
                .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
                .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, _) in query {
        if !declared.contains(k) {
            errs.push(format!(
                "{method} {template}: query parameter `{k}` is not declared"
            ));
        }
    }
    match (op.get("requestBody").and_then(json_schema), body) {
        (Some(schema), Some(b)) => {
            check(schema, b, &format!("{method} {template} body"), &mut errs)
        }
        (Some(_), None) => {
            if op.pointer("/requestBody/required") == Some(&Value::Bool(true)) {
                errs.push(format!("{method} {template}: the body is required"));
            }
        }
        (None, Some(b)) if b != &Value::Object(Default::default()) => {
            errs.push(format!("{method} {template}: takes no body, got {b}"))
        }
        (None, _) => {}
    }
    errs
}

/// Problems of a response of `status` with `body` (None: empty body).
pub fn check_response(method: &str, path: &str, status: u16, body: Option<&Value>) -> Vec<String> {
    let mut errs = Vec::new();
    let Some((template, op)) = operation(method, path) else {
        return vec![format!(
            "{method} {path}: no such operation in the API description"
        )];
    };
    let code = status.to_string();
    let class = format!("{}xx", status / 100);
    let Some(resp) = op.get("responses").and_then(|r| {
        r.get(&code)
            .or_else(|| r.get(&class))
            .or_else(|| r.get("default"))
    }) else {
        return vec![format!(
            "{method} {template}: status {status} is not documented"
        )];
    };
    match (json_schema(resp), body) {
        (Some(schema), Some(b)) => check(
            schema,
            b,
            &format!("{method} {template} → {status}"),
            &mut errs,
        ),
        (Some(_), None) => errs.push(format!(
            "{method} {template} → {status}: a body is documented, none sent"
        )),
        (None, Some(b)) => errs.push(format!(
            "{method} {template} → {status}: no body is documented, sent {b}"
        )),
        (None, None) => {}
    }
    errs
}
