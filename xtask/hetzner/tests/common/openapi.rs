//! Checks JSON against the Hetzner Cloud API's OpenAPI description
//! (`../shared/hetzner/hcloud-openapi.json`): the client's requests and the
//! stand-in's responses, so both follow Hetzner's shapes, not our guess.
//!
//! Checked: `$ref`, `nullable`, `allOf`/`oneOf`/`anyOf`, `enum`, `type`,
//! `required`, `properties`/`additionalProperties`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `pattern`,
//! `minimum`/`maximum`, `format` (`int32`, `int64`, `double`, `date-time`),
//! and every query and path parameter against its schema.

use std::sync::OnceLock;

use serde_json::Value;

use super::pattern;

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
    scalar_limits(schema, value, at, errs);
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

/// Lengths, pattern, bounds, item counts and formats.
fn scalar_limits(schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(text) = value.as_str() {
        let len = text.chars().count() as f64;
        if num("maxLength").is_some_and(|m| len > m) {
            errs.push(format!(
                "{at}: {value} is longer than maxLength {}",
                schema["maxLength"]
            ));
        }
        if num("minLength").is_some_and(|m| len < m) {
            errs.push(format!(
                "{at}: {value} is shorter than minLength {}",
                schema["minLength"]
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !pattern::is_match(p, text)
        {
            errs.push(format!("{at}: {value} does not match the pattern {p}"));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && image_spec::time::parse_rfc3339(text).is_none()
        {
            errs.push(format!("{at}: {value} is not an RFC 3339 date-time"));
        }
    }
    if let Some(n) = value.as_f64() {
        if num("minimum").is_some_and(|m| n < m) {
            errs.push(format!(
                "{at}: {value} is below the minimum {}",
                schema["minimum"]
            ));
        }
        if num("maximum").is_some_and(|m| n > m) {
            errs.push(format!(
                "{at}: {value} is above the maximum {}",
                schema["maximum"]
            ));
        }
        let fits = match schema.get("format").and_then(Value::as_str) {
            Some("int64") => value.is_i64(),
            Some("int32") => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            _ => true,
        };
        if !fits {
            errs.push(format!(
                "{at}: {value} does not fit the format {}",
                schema["format"]
            ));
        }
    }
    if let Some(arr) = value.as_array() {
        let len = arr.len() as f64;
        if num("maxItems").is_some_and(|m| len > m) || num("minItems").is_some_and(|m| len < m) {
            errs.push(format!(
                "{at}: {} items, outside minItems/maxItems",
                arr.len()
            ));
        }
    }
}

/// A query or path parameter's text as the JSON value its schema describes.
fn parameter_value(schema: &Value, text: &str) -> Value {
    let schema = resolve(schema);
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.into())),
        Some("number") => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.into())),
        Some("boolean") => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.into()),
        },
        Some("array") => match schema.get("items") {
            Some(items) => parameter_value(items, text),
            None => Value::String(text.into()),
        },
        _ => Value::String(text.into()),
    }
}

/// The schema of a parameter: its `items` when it is an array (a
/// repeated query parameter is one item each time).
fn parameter_schema(p: &Value) -> Option<&Value> {
    let schema = resolve(p.get("schema")?);
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => schema.get("items"),
        _ => Some(schema),
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
    let params: Vec<&Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(resolve).collect())
        .unwrap_or_default();
    let named = |place: &str, name: &str| {
        params.iter().copied().find(|p| {
            p.get("in").and_then(Value::as_str) == Some(place)
                && p.get("name").and_then(Value::as_str) == Some(name)
        })
    };
    for (k, v) in query {
        match named("query", k) {
            None => errs.push(format!(
                "{method} {template}: query parameter `{k}` is not declared"
            )),
            Some(p) => {
                if let Some(schema) = parameter_schema(p) {
                    let at = format!("{method} {template} query `{k}`");
                    check(schema, &parameter_value(schema, v), &at, &mut errs);
                }
            }
        }
    }
    for p in &params {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if p.get("in").and_then(Value::as_str) == Some("query")
            && p.get("required") == Some(&Value::Bool(true))
            && !query.iter().any(|(k, _)| k == name)
        {
            errs.push(format!(
                "{method} {template}: required query parameter `{name}` is missing"
            ));
        }
    }
    let t_segs = template.trim_matches('/').split('/');
    for (t, actual) in t_segs.zip(path.trim_matches('/').split('/')) {
        let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
            continue;
        };
        if let Some(schema) = named("path", name).and_then(parameter_schema) {
            let at = format!("{method} {template} path `{name}`");
            check(schema, &parameter_value(schema, actual), &at, &mut errs);
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
