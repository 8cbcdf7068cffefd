//! A stand-in for the part of the Hetzner Cloud API the upload uses, with
//! the documented JSON shapes: servers (created off, rescue, power), SSH
//! keys, images with label selectors and pagination, actions that go
//! `running` → `success` after a poll, the error envelope, 401 for a wrong
//! token, 429 with `Retry-After`/`RateLimit-Reset`. Every call is recorded;
//! every request and response is checked against the OpenAPI description.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::openapi;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path below `/v1`.
    pub path: String,
    /// Query pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The status answered.
    pub status: u16,
}

/// An injected failure of the first `times` requests matching `method`
/// whose path contains `path_contains`: answered with the envelope, or
/// (`status` 0) carried out but answered only after `delay` — a client
/// with a shorter timeout sees a timeout after the resource exists.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The method to fail.
    pub method: &'static str,
    /// A part of the path to fail (e.g. `/actions/poweron`).
    pub path_contains: &'static str,
    /// HTTP status (0: carry it out, answer late).
    pub status: u16,
    /// Envelope code (empty: a bare body, as a proxy's 502 page).
    pub code: &'static str,
    /// Envelope message.
    pub message: &'static str,
    /// How many matching requests fail.
    pub times: u32,
    /// How late a carried-out request is answered.
    pub delay: std::time::Duration,
}

impl Fault {
    /// The first matching request is answered with this error envelope.
    pub fn error(
        method: &'static str,
        path_contains: &'static str,
        status: u16,
        code: &'static str,
        message: &'static str,
    ) -> Fault {
        Fault {
            method,
            path_contains,
            status,
            code,
            message,
            times: 1,
            delay: std::time::Duration::ZERO,
        }
    }

    /// The first `times` matching requests fail.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    /// The first matching request is carried out, then answered after `delay`.
    pub fn late(
        method: &'static str,
        path_contains: &'static str,
        delay: std::time::Duration,
    ) -> Fault {
        Fault {
            delay,
            ..Fault::error(method, path_contains, 0, "", "")
        }
    }
}

struct ActionState {
    json: Value,
    polls_left: u32,
}

/// The stand-in's state; tests read and change it through [`Mock::state`].
pub struct State {
    /// The token it accepts.
    pub token: String,
    /// Every call.
    pub calls: Vec<Call>,
    /// Requests or responses that do not fit the API description.
    pub violations: Vec<String>,
    /// Servers by id.
    pub servers: BTreeMap<i64, Value>,
    /// SSH keys by id.
    pub ssh_keys: BTreeMap<i64, Value>,
    /// Images (snapshots) by id.
    pub images: BTreeMap<i64, Value>,
    actions: BTreeMap<i64, ActionState>,
    next_id: i64,
    /// Where `enable_rescue` writes the rescue keys (the sshd's authorized_keys).
    pub authorized_keys: Option<PathBuf>,
    /// Answer this many next requests with 429.
    pub rate_limit: u32,
    /// Requests to fail, each once.
    pub faults: Vec<Fault>,
    /// Items per page of list answers.
    pub per_page: usize,
    /// Polls before an action succeeds.
    pub action_polls: u32,
    /// What `GET /server_types` lists.
    pub server_types: Vec<Value>,
    /// `GET /images/{id}` answers before a `creating` image is `available`
    /// (new snapshots start `creating` when this is above 0).
    pub creating_polls: u32,
    /// Per image: `GET /images/{id}` answers left while `creating`.
    pub image_polls: BTreeMap<i64, u32>,
    /// A file that exists while the server runs the rescue system (the
    /// loopback sshd's fake `hostname` and `findmnt` read it): made at
    /// `poweron` after `enable_rescue`, removed at `shutdown`/`poweroff`.
    pub rescue_flag: Option<PathBuf>,
    /// `poweron` boots the normal system although rescue was enabled.
    pub rescue_does_not_take: bool,
}

/// The running stand-in; stops when dropped.
pub struct Mock {
    /// Base URL, e.g. `http://127.0.0.1:4711/v1` (what `HCLOUD_ENDPOINT` takes).
    pub url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

const NOW: &str = "2026-11-24T10:00:00+00:00";

fn location() -> Value {
    json!({"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
           "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"})
}

/// A server type as the API lists it.
pub fn server_type_json(
    name: &str,
    arch: &str,
    disk: f64,
    locations: &[&str],
    deprecated: bool,
) -> Value {
    let deprecation = deprecated.then(|| {
        json!({"announced": "2026-01-01T00:00:00+00:00", "unavailable_after": "2026-04-01T00:00:00+00:00"})
    });
    let locs: Vec<Value> = locations
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"id": i + 1, "name": l, "deprecation": deprecation}))
        .collect();
    let prices: Vec<Value> = locations
        .iter()
        .map(|l| json!({"location": l,
                       "price_hourly": {"net": "0.0060000000", "gross": "0.0071400000000000"},
                       "price_monthly": {"net": "3.4900000000", "gross": "4.1531000000000000"},
                       "included_traffic": 21_990_232_555_520_i64,
                       "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000000000"}}))
        .collect();
    json!({"id": 100 + name.len() as i64 + disk as i64, "name": name, "description": name.to_uppercase(),
           "category": "cost_optimized", "cores": 2, "memory": 4.0, "disk": disk, "deprecated": deprecated,
           "deprecation": deprecation, "cpu_type": "shared", "storage_type": "local", "architecture": arch,
           "locations": locs, "prices": prices})
}

/// The server types the stand-in offers: `cx23` (x86, 40 GB, fsn1 and
/// nbg1), `cx33` (x86, 80 GB, fsn1), `cx11` (deprecated), `cax11` (arm,
/// fsn1), `cpx11` (x86, only in ash).
pub fn default_server_types() -> Vec<Value> {
    vec![
        server_type_json("cx23", "x86", 40.0, &["fsn1", "nbg1"], false),
        server_type_json("cx33", "x86", 80.0, &["fsn1"], false),
        server_type_json("cx11", "x86", 20.0, &["fsn1"], true),
        server_type_json("cax11", "arm", 40.0, &["fsn1"], false),
        server_type_json("cpx11", "x86", 40.0, &["ash"], false),
    ]
}

fn server_type(name: &str) -> Value {
    default_server_types()
        .into_iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| server_type_json(name, "x86", 40.0, &["fsn1"], false))
}

/// A snapshot of `status` labelled with `sha256` (split as upload does).
pub fn snapshot_json(id: i64, status: &str, sha256: &str) -> Value {
    json!({"id": id, "type": "snapshot", "status": status, "name": null,
           "description": "earlier upload", "image_size": 0.4, "disk_size": 40, "created": NOW,
           "created_from": null, "bound_to": null, "os_flavor": "debian", "os_version": null,
           "rapid_deploy": false, "protection": {"delete": false}, "deprecated": null, "deleted": null,
           "labels": {"openclaw-image/sha256-1": &sha256[..32], "openclaw-image/sha256-2": &sha256[32..]},
           "architecture": "x86"})
}

fn system_image() -> Value {
    json!({"id": 161547269, "type": "system", "status": "available", "name": "debian-13",
           "description": "Debian 13", "image_size": null, "disk_size": 5, "created": NOW,
           "created_from": null, "bound_to": null, "os_flavor": "debian", "os_version": "13",
           "rapid_deploy": true, "protection": {"delete": false}, "deprecated": null,
           "deleted": null, "labels": {}, "architecture": "x86"})
}

fn server_json(id: i64, name: &str, st: &str, labels: &Value) -> Value {
    json!({"id": id, "name": name, "status": "initializing", "created": NOW,
           "public_net": {"ipv4": {"id": id + 1000, "ip": "127.0.0.1", "blocked": false, "dns_ptr": "static.1.0.0.127.clients.your-server.de"},
                          "ipv6": null, "floating_ips": [], "firewalls": []},
           "private_net": [], "server_type": server_type(st),
           "datacenter": {"id": 4, "name": "fsn1-dc14", "description": "Falkenstein 1 virtual DC 14",
                          "location": location(),
                          "server_types": {"supported": [104], "available": [104], "available_for_migration": [104]}},
           "location": location(),
           "image": system_image(), "iso": null, "rescue_enabled": false, "locked": false,
           "backup_window": null, "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21_990_232_555_520_i64,
           "protection": {"delete": false, "rebuild": false}, "labels": labels,
           "volumes": [], "load_balancers": [], "primary_disk_size": 40, "placement_group": null})
}

fn envelope(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "details": {}}})
}

/// Whether `labels` satisfy a selector of the forms the API documents
/// (`k==v`, `k=v`, `k!=v`, `k`, `!k`, comma = and).
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new action on `resource` (type, id), `running` until polled.
    fn action(&mut self, command: &str, resources: &[(&str, i64)]) -> Value {
        let id = self.id();
        let res: Vec<Value> = resources
            .iter()
            .map(|(t, i)| json!({"id": i, "type": t}))
            .collect();
        let a = json!({"id": id, "command": command, "status": "running", "progress": 0,
                       "started": NOW, "finished": null, "resources": res, "error": null});
        self.actions.insert(
            id,
            ActionState {
                json: a.clone(),
                polls_left: self.action_polls,
            },
        );
        a
    }

    fn poll(&mut self, id: i64) -> Option<Value> {
        let a = self.actions.get_mut(&id)?;
        if a.polls_left > 0 {
            a.polls_left -= 1;
            if a.polls_left == 0 {
                a.json["status"] = json!("success");
                a.json["progress"] = json!(100);
                a.json["finished"] = json!(NOW);
            }
        }
        Some(a.json.clone())
    }

    fn page(&self, key: &str, items: Vec<Value>, query: &[(String, String)]) -> Value {
        let q = |k: &str| {
            query
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let per = q("per_page").unwrap_or(25).min(self.per_page).max(1);
        let page = q("page").unwrap_or(1).max(1);
        let total = items.len();
        let last = total.div_ceil(per).max(1);
        let chunk: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
        json!({key: chunk, "meta": {"pagination": {
            "page": page, "per_page": per, "total_entries": total, "last_page": last,
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last { json!(page + 1) } else { Value::Null }}}})
    }

    /// The answer to one authorized request.
    fn route(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &Value,
    ) -> (u16, Option<Value>) {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let selector = query
            .iter()
            .find(|(k, _)| k == "label_selector")
            .map(|(_, v)| v.clone());
        let labelled = |items: &BTreeMap<i64, Value>| -> Vec<Value> {
            items
                .values()
                .filter(|v| selector.as_deref().is_none_or(|s| selects(s, &v["labels"])))
                .cloned()
                .collect()
        };
        match (method, segs.as_slice()) {
            ("GET", ["server_types"]) => {
                let name = query
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.as_str());
                let all: Vec<Value> = self
                    .server_types
                    .iter()
                    .filter(|t| name.is_none_or(|w| t["name"] == w))
                    .cloned()
                    .collect();
                (200, Some(self.page("server_types", all, query)))
            }
            ("POST", ["ssh_keys"]) => {
                let id = self.id();
                let k = json!({"id": id, "name": body["name"], "fingerprint": "b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f",
                               "public_key": body["public_key"], "labels": body.get("labels").cloned().unwrap_or(json!({})),
                               "created": NOW});
                self.ssh_keys.insert(id, k.clone());
                (201, Some(json!({"ssh_key": k})))
            }
            ("GET", ["ssh_keys"]) => (
                200,
                Some(self.page("ssh_keys", labelled(&self.ssh_keys), query)),
            ),
            ("DELETE", ["ssh_keys", id]) => {
                match id.parse().ok().and_then(|i| self.ssh_keys.remove(&i)) {
                    Some(_) => (204, None),
                    None => (404, Some(envelope("not_found", "ssh_key not found"))),
                }
            }
            ("POST", ["servers"]) => {
                let id = self.id();
                let st = body["server_type"].as_str().unwrap_or("cx23");
                let mut s =
                    server_json(id, body["name"].as_str().unwrap_or(""), st, &body["labels"]);
                s["status"] = json!("off");
                self.servers.insert(id, s.clone());
                let a = self.action("create_server", &[("server", id)]);
                (
                    201,
                    Some(
                        json!({"server": s, "action": a, "next_actions": [], "root_password": null}),
                    ),
                )
            }
            ("GET", ["servers"]) => (
                200,
                Some(self.page("servers", labelled(&self.servers), query)),
            ),
            ("GET", ["servers", id]) => match id.parse().ok().and_then(|i| self.servers.get(&i)) {
                Some(s) => (200, Some(json!({"server": s}))),
                None => (404, Some(envelope("not_found", "server not found"))),
            },
            ("DELETE", ["servers", id]) => {
                match id.parse().ok().filter(|i| self.servers.remove(i).is_some()) {
                    Some(i) => (
                        200,
                        Some(json!({"action": self.action("delete_server", &[("server", i)])})),
                    ),
                    None => (404, Some(envelope("not_found", "server not found"))),
                }
            }
            ("POST", ["servers", id, "actions", command]) => {
                let Some(sid) = id
                    .parse::<i64>()
                    .ok()
                    .filter(|i| self.servers.contains_key(i))
                else {
                    return (404, Some(envelope("not_found", "server not found")));
                };
                self.server_action(sid, command, body)
            }
            ("GET", ["actions"]) => {
                let ids: Vec<i64> = query
                    .iter()
                    .filter(|(k, _)| k == "id")
                    .filter_map(|(_, v)| v.parse().ok())
                    .collect();
                let found: Vec<Value> = ids.into_iter().filter_map(|i| self.poll(i)).collect();
                (200, Some(json!({"actions": found})))
            }
            ("GET", ["images", id]) => {
                let Some(i) = id
                    .parse::<i64>()
                    .ok()
                    .filter(|i| self.images.contains_key(i))
                else {
                    return (404, Some(envelope("not_found", "image not found")));
                };
                if let Some(left) = self.image_polls.get_mut(&i) {
                    if *left == 0 {
                        self.images.get_mut(&i).expect("image")["status"] = json!("available");
                        self.image_polls.remove(&i);
                    } else {
                        *left -= 1;
                    }
                }
                (200, Some(json!({"image": self.images[&i]})))
            }
            ("GET", ["images"]) => {
                let kind = query
                    .iter()
                    .find(|(k, _)| k == "type")
                    .map(|(_, v)| v.clone());
                let items: Vec<Value> = labelled(&self.images)
                    .into_iter()
                    .filter(|i| kind.as_deref().is_none_or(|t| i["type"] == t))
                    .collect();
                (200, Some(self.page("images", items, query)))
            }
            _ => (
                404,
                Some(envelope("not_found", &format!("no route {method} {path}"))),
            ),
        }
    }

    fn server_action(&mut self, sid: i64, command: &str, body: &Value) -> (u16, Option<Value>) {
        let set = |state: &mut State, k: &str, v: Value| {
            if let Some(s) = state.servers.get_mut(&sid) {
                s[k] = v;
            }
        };
        match command {
            "enable_rescue" => {
                let keys: Vec<String> = body["ssh_keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64)
                    .filter_map(|k| self.ssh_keys.get(&k))
                    .filter_map(|k| k["public_key"].as_str().map(str::to_string))
                    .collect();
                if let Some(path) = &self.authorized_keys {
                    std::fs::write(path, keys.join("\n") + "\n").expect("writing authorized_keys");
                }
                set(self, "rescue_enabled", json!(true));
                let a = self.action("enable_rescue", &[("server", sid)]);
                (201, Some(json!({"action": a, "root_password": "not-used"})))
            }
            "poweron" | "shutdown" | "poweroff" => {
                let rescue = command == "poweron"
                    && !self.rescue_does_not_take
                    && self.servers[&sid]["rescue_enabled"] == true;
                if let Some(flag) = &self.rescue_flag {
                    match rescue {
                        true => std::fs::write(flag, "").expect("writing the rescue flag"),
                        false => {
                            let _ = std::fs::remove_file(flag);
                        }
                    }
                }
                set(
                    self,
                    "status",
                    json!(if command == "poweron" {
                        "running"
                    } else {
                        "off"
                    }),
                );
                (
                    201,
                    Some(json!({"action": self.action(command, &[("server", sid)])})),
                )
            }
            "create_image" => {
                let id = self.id();
                let status = match self.creating_polls {
                    0 => "available",
                    n => {
                        self.image_polls.insert(id, n);
                        "creating"
                    }
                };
                let img = json!({"id": id, "type": body["type"], "status": status, "name": null,
                                 "description": body["description"], "image_size": 0.42, "disk_size": 40,
                                 "created": NOW, "created_from": {"id": sid, "name": "upload"},
                                 "bound_to": null, "os_flavor": "debian", "os_version": null,
                                 "rapid_deploy": false, "protection": {"delete": false}, "deprecated": null,
                                 "deleted": null, "labels": body["labels"], "architecture": "x86"});
                self.images.insert(id, img.clone());
                let a = self.action("create_image", &[("server", sid), ("image", id)]);
                (201, Some(json!({"action": a, "image": img})))
            }
            _ => (404, Some(envelope("not_found", "unknown action"))),
        }
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mock {
    /// Start on a random loopback port, accepting `token`.
    pub fn start(token: &str) -> Mock {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("binding the mock API"));
        let port = server.server_addr().to_ip().expect("ip address").port();
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            calls: Vec::new(),
            violations: Vec::new(),
            servers: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            images: BTreeMap::new(),
            actions: BTreeMap::new(),
            next_id: 100,
            authorized_keys: None,
            rate_limit: 0,
            faults: Vec::new(),
            per_page: 50,
            action_polls: 2,
            server_types: default_server_types(),
            creating_polls: 0,
            image_polls: BTreeMap::new(),
            rescue_flag: None,
            rescue_does_not_take: false,
        }));
        let (srv, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                let st = st.clone();
                std::thread::spawn(move || handle(&st, req));
            }
        });
        Mock {
            url: format!("http://127.0.0.1:{port}/v1"),
            state,
            server,
            thread: Some(thread),
        }
    }

    /// The state, to read or change.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls as `METHOD /path` strings.
    pub fn call_lines(&self) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .map(|c| format!("{} {} {}", c.method, c.path, c.status))
            .collect()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(state: &Arc<Mutex<State>>, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, q) = url.split_once('?').unwrap_or((&url, ""));
    let path = path.strip_prefix("/v1").unwrap_or(path).to_string();
    let query: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let mut raw = String::new();
    let _ = req.as_reader().read_to_string(&mut raw);
    let body: Option<Value> = if raw.trim().is_empty() {
        None
    } else {
        serde_json::from_str(&raw).ok()
    };
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());

    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut violations = openapi::check_request(&method, &path, &query, body.as_ref());
    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut delay = std::time::Duration::ZERO;
    let mut from_proxy = false;
    let (status, answer) = if auth.as_deref() != Some(&format!("Bearer {}", st.token)) {
        (
            401,
            Some(envelope("unauthorized", "unable to authenticate")),
        )
    } else if st.rate_limit > 0 {
        st.rate_limit -= 1;
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 1;
        headers.push(("Retry-After", "1".into()));
        headers.push(("RateLimit-Limit", "3600".into()));
        headers.push(("RateLimit-Remaining", "0".into()));
        headers.push(("RateLimit-Reset", reset.to_string()));
        (
            429,
            Some(envelope(
                "rate_limit_exceeded",
                "limit of 3600 requests per hour reached",
            )),
        )
    } else if let Some(i) = st
        .faults
        .iter()
        .position(|f| f.method == method && path.contains(f.path_contains))
    {
        let f = st.faults[i].clone();
        st.faults[i].times -= 1;
        if st.faults[i].times == 0 {
            st.faults.remove(i);
        }
        match (f.status, f.code) {
            (0, _) => {
                delay = f.delay;
                let empty = json!({});
                st.route(&method, &path, &query, body.as_ref().unwrap_or(&empty))
            }
            (status, "") => {
                // A proxy's bare page, not the API: nothing to check.
                from_proxy = true;
                (status, None)
            }
            (status, code) => (status, Some(envelope(code, f.message))),
        }
    } else {
        let empty = json!({});
        st.route(&method, &path, &query, body.as_ref().unwrap_or(&empty))
    };
    if !from_proxy {
        violations.extend(openapi::check_response(
            &method,
            &path,
            status,
            answer.as_ref(),
        ));
    }
    st.violations.extend(violations);
    st.calls.push(Call {
        method,
        path,
        query,
        body,
        status,
    });
    drop(st);
    std::thread::sleep(delay);

    let text = answer.map(|a| a.to_string()).unwrap_or_default();
    let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
    if status != 204 {
        resp.add_header(
            tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"),
        );
    }
    for (k, v) in headers {
        resp.add_header(tiny_http::Header::from_bytes(k, v.as_bytes()).expect("header"));
    }
    let _ = req.respond(resp);
}
