//! The upload flow against a stand-in Hetzner API and a real sshd on
//! loopback acting as the rescue system (writing a file, not /dev/sda).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mock::{Fault, Mock};
use common::sshd::Sshd;
use common::{TOKEN, client, disk, make_image, options, within};
use hetzner::Interrupt;
use hetzner::image::ImageInfo;
use hetzner::upload::{self, Outcome, UploadError, UploadOptions};

/// A stand-in API wired to a fresh sshd, an image, and options.
struct Setup {
    mock: Mock,
    sshd: Sshd,
    dir: tempfile::TempDir,
    image: ImageInfo,
    options: UploadOptions,
}

fn setup(mib: usize) -> Setup {
    let dir = tempfile::tempdir().expect("temporary directory");
    let image = make_image(dir.path(), mib);
    let sshd = Sshd::start();
    let mock = Mock::start(TOKEN);
    mock.state().authorized_keys = Some(sshd.authorized_keys.clone());
    let options = options(sshd.port, &sshd.user, &disk(dir.path()));
    Setup {
        mock,
        sshd,
        dir,
        image,
        options,
    }
}

impl Setup {
    fn upload(&self) -> Result<Outcome, UploadError> {
        let c = client(&self.mock.url, TOKEN);
        upload::upload(&c, &self.image, &self.options, &Interrupt::new())
    }

    /// Nothing temporary is left, and every request and response fit the API description.
    #[track_caller]
    fn assert_nothing_left(&self) {
        let st = self.mock.state();
        assert!(
            st.servers.is_empty(),
            "servers left: {:?}\ncalls: {:?}",
            st.servers.keys(),
            self.calls(&st)
        );
        assert!(
            st.ssh_keys.is_empty(),
            "SSH keys left: {:?}",
            st.ssh_keys.keys()
        );
        assert!(
            st.violations.is_empty(),
            "not as the API documents: {:#?}",
            st.violations
        );
    }

    fn calls(&self, st: &common::mock::State) -> Vec<String> {
        st.calls
            .iter()
            .map(|c| format!("{} {} {}", c.method, c.path, c.status))
            .collect()
    }

    /// Upload with `fault` injected; the error message.
    fn fail_with(&self, faults: Vec<Fault>) -> String {
        self.mock.state().faults = faults;
        self.upload().expect_err("the upload must fail").to_string()
    }

    #[track_caller]
    fn assert_called(&self, method: &str, path_prefix: &str) {
        let lines = self.mock.call_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{method} {path_prefix}"))),
            "no {method} {path_prefix}… in {lines:#?}"
        );
    }
}

#[test]
fn happy_path_writes_the_image_then_a_second_upload_is_skipped() {
    within(120, || {
        let s = setup(6);
        let Outcome::Uploaded(snap) = s
            .upload()
            .unwrap_or_else(|e| panic!("upload failed: {e}\nsshd: {}", s.sshd.log_text()))
        else {
            panic!("expected a new snapshot");
        };
        let written = std::fs::read(disk(s.dir.path())).expect("the written disk");
        let original = std::fs::read(&s.image.path).expect("the image");
        assert_eq!(written.len(), original.len(), "written length");
        assert!(
            written == original,
            "the written bytes differ from the image"
        );
        assert_eq!(snap.kind, "snapshot");
        let sha = &s.image.sha256;
        assert_eq!(snap.labels["openclaw-image/sha256-1"], sha[..32]);
        assert_eq!(snap.labels["openclaw-image/sha256-2"], sha[32..]);
        assert_eq!(snap.labels["openclaw-image/openclaw-version"], "2026.9.6");
        assert_eq!(snap.labels["openclaw-image/spec"], "openclaw-appliance");
        assert_eq!(snap.labels["openclaw-image/build-date"], "2025-11-24");
        assert!(
            snap.description.contains(sha.as_str()),
            "{}",
            snap.description
        );
        for (m, p) in [
            ("POST", "/ssh_keys"),
            ("POST", "/servers"),
            ("GET", "/actions"),
            ("DELETE", "/servers/"),
            ("DELETE", "/ssh_keys/"),
        ] {
            s.assert_called(m, p);
        }
        {
            let st = s.mock.state();
            let create = st
                .calls
                .iter()
                .find(|c| c.method == "POST" && c.path == "/servers")
                .expect("POST /servers");
            let body = create.body.as_ref().expect("a body");
            assert_eq!(body["start_after_create"], false);
            assert_eq!(body["labels"]["openclaw-image/temporary"], "upload");
            let rescue = st
                .calls
                .iter()
                .find(|c| c.path.ends_with("/enable_rescue"))
                .expect("enable_rescue");
            assert_eq!(rescue.body.as_ref().expect("a body")["type"], "linux64");
        }
        s.assert_nothing_left();
        let usage = upload::usage(&snap, &s.options);
        assert!(
            usage.contains(&format!(
                "hcloud server create --name openclaw --image {}",
                snap.id
            )),
            "{usage}"
        );
        assert!(usage.contains("--user-data-from-file"), "{usage}");
        assert!(
            usage.contains(&format!("hcloud server rebuild --image {}", snap.id)),
            "{usage}"
        );

        // The same image again: found by its sha256 labels, nothing uploaded.
        let before = s.mock.state().calls.len();
        match s.upload() {
            Ok(Outcome::AlreadyPresent(img)) => assert_eq!(img.id, snap.id),
            other => panic!("expected the duplicate to be skipped, got {other:?}"),
        }
        let st = s.mock.state();
        assert!(
            st.calls[before..].iter().all(|c| c.method == "GET"),
            "the skipped upload changed something: {:?}",
            s.calls(&st)[before..].to_vec()
        );
    });
}

#[test]
fn failure_after_the_server_exists_leaves_nothing() {
    within(60, || {
        let s = setup(2);
        let err = s.fail_with(vec![
            Fault {
                method: "POST",
                path_contains: "/actions/poweron",
                status: 503,
                code: "resource_unavailable",
                message: "the host is in maintenance",
            },
            // The first delete finds the server busy: cleanup retries.
            Fault {
                method: "DELETE",
                path_contains: "/servers/",
                status: 423,
                code: "locked",
                message: "server is locked",
            },
        ]);
        assert!(err.contains("powering on"), "{err}");
        assert!(
            err.contains("503 resource_unavailable: the host is in maintenance"),
            "{err}"
        );
        s.assert_called("DELETE", "/servers/");
        s.assert_called("DELETE", "/ssh_keys/");
        let lines = s.mock.call_lines();
        let deletes = lines
            .iter()
            .filter(|l| l.starts_with("DELETE /servers/"))
            .count();
        assert_eq!(
            deletes, 2,
            "the locked server was not deleted again: {lines:#?}"
        );
        s.assert_nothing_left();
    });
}

#[test]
fn api_error_is_shown_with_code_and_message() {
    within(60, || {
        let s = setup(1);
        let err = s.fail_with(vec![Fault {
            method: "POST",
            path_contains: "/servers",
            status: 422,
            code: "invalid_input",
            message: "invalid input in field 'location'",
        }]);
        assert_eq!(
            err,
            "creating the temporary server: POST /servers: the Hetzner API answered 422 invalid_input: invalid input in field 'location'"
        );
        s.assert_called("DELETE", "/ssh_keys/");
        s.assert_nothing_left();
    });
}

#[test]
fn bad_token_says_what_to_fix_and_never_shows_the_token() {
    within(30, || {
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = make_image(dir.path(), 1);
        let mock = Mock::start(TOKEN);
        let secret = "wrong-token-that-must-not-appear";
        let c = client(&mock.url, secret);
        let err = upload::upload(&c, &image, &UploadOptions::default(), &Interrupt::new())
            .expect_err("a wrong token must fail")
            .to_string();
        assert!(
            err.contains("the Hetzner API refused the token (401 unauthorized)"),
            "{err}"
        );
        assert!(err.contains("HCLOUD_TOKEN"), "{err}");
        assert!(!err.contains(secret), "the token leaked: {err}");
        assert!(
            mock.state().calls.iter().all(|c| c.method == "GET"),
            "nothing may be created"
        );
    });
}

#[test]
fn rate_limits_are_honoured_and_pages_followed() {
    within(30, || {
        let mock = Mock::start(TOKEN);
        for i in 0..3 {
            mock.state().images.insert(
                i,
                serde_json::json!({"id": i, "type": "snapshot", "status": "available", "name": null,
                    "description": "", "image_size": 0.4, "disk_size": 40, "created": "2026-11-24T10:00:00+00:00",
                    "created_from": null, "bound_to": null, "os_flavor": "debian", "os_version": null,
                    "rapid_deploy": false, "protection": {"delete": false}, "deprecated": null, "deleted": null,
                    "labels": {"openclaw-image/sha256-1": "a".repeat(32), "openclaw-image/sha256-2": if i == 1 { "c" } else { "b" }.repeat(32)},
                    "architecture": "x86"}),
            );
        }
        mock.state().per_page = 1;
        mock.state().rate_limit = 1;
        let started = Instant::now();
        let found = upload::find_existing(
            &client(&mock.url, TOKEN),
            &format!("{}{}", "a".repeat(32), "b".repeat(32)),
        )
        .expect("listing snapshots");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the 429 was not waited for"
        );
        let ids: Vec<i64> = found.iter().map(|i| i.id).collect();
        assert_eq!(ids, [0, 2]);
        let st = mock.state();
        let pages: Vec<String> = st
            .calls
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| {
                c.query
                    .iter()
                    .find(|(k, _)| k == "page")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(pages, ["1", "2"]);
        assert_eq!(st.calls[0].status, 429);
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    });
}

#[test]
fn cleanup_removes_leftovers_by_label_only() {
    within(30, || {
        let mock = Mock::start(TOKEN);
        let c = client(&mock.url, TOKEN);
        let temp: hetzner::labels::Labels =
            [("openclaw-image/temporary".to_string(), "upload".to_string())].into();
        let other: hetzner::labels::Labels = [("team".to_string(), "web".to_string())].into();
        for (name, labels) in [("left-1", &temp), ("keep", &other)] {
            c.create_ssh_key(&hetzner::api::types::CreateSshKey {
                name,
                public_key: "ssh-ed25519 AAAA x",
                labels,
            })
            .expect("key");
            c.create_server(&hetzner::api::types::CreateServer {
                name,
                server_type: "cx23",
                image: "debian-13",
                location: "fsn1",
                start_after_create: false,
                ssh_keys: vec![],
                labels,
            })
            .expect("server");
        }
        let cleaned = upload::cleanup(&c).expect("cleanup");
        assert_eq!(cleaned.servers, ["left-1"]);
        assert_eq!(cleaned.ssh_keys, ["left-1"]);
        let st = mock.state();
        assert_eq!(st.servers.len(), 1);
        assert_eq!(st.ssh_keys.len(), 1);
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    });
}

/// The child half of `interrupt_mid_stream_leaves_nothing`: runs an upload
/// in its own process (so it can get a real SIGINT) from the parent's
/// `spec`, then exits.
fn child_upload(spec: &str) -> ! {
    let v: serde_json::Value = serde_json::from_str(spec).expect("child spec");
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    let image = ImageInfo::load(std::path::Path::new(&s("image"))).expect("image");
    let mut opts = options(
        v["port"].as_u64().expect("port") as u16,
        &s("user"),
        std::path::Path::new(&s("target")),
    );
    opts.max_rate = Some(1 << 20);
    let interrupt = Interrupt::on_ctrl_c().expect("Ctrl-C handler");
    let result = upload::upload(&client(&s("url"), TOKEN), &image, &opts, &interrupt);
    eprintln!("child: result: {result:?}");
    std::process::exit(if result.is_ok() { 0 } else { 3 });
}

/// Runs itself again as the child (`HETZNER_TEST_CHILD` set), which
/// uploads until the parent's SIGINT.
#[test]
fn interrupt_mid_stream_leaves_nothing() {
    if let Ok(spec) = std::env::var("HETZNER_TEST_CHILD") {
        child_upload(&spec);
    }
    within(120, || {
        let s = setup(8);
        let spec = serde_json::json!({
            "url": s.mock.url, "image": s.image.path.display().to_string(), "port": s.sshd.port,
            "user": s.sshd.user, "target": disk(s.dir.path()).display().to_string(),
        });
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "interrupt_mid_stream_leaves_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HETZNER_TEST_CHILD", spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the child upload");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log.iter().any(|l: &String| l.contains("streaming")) {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => log.push(line),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "the stream never started: {log:#?}"
                ),
            }
            assert!(
                child.try_wait().expect("child status").is_none(),
                "the child ended early: {log:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(1500));
        let pid = child.id().to_string();
        let killed = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(killed.success());
        let status = loop {
            if let Some(st) = child.try_wait().expect("child status") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "the child did not stop after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        log.extend(rx.try_iter());
        assert_eq!(
            status.code(),
            Some(3),
            "the interrupted upload must fail: {log:#?}"
        );
        let text = log.join("\n");
        assert!(text.contains("Interrupted"), "{text}");
        assert!(
            !text.contains("taking the snapshot"),
            "it went on after SIGINT: {text}"
        );
        s.assert_called("DELETE", "/servers/");
        s.assert_nothing_left();
        assert!(s.mock.state().images.is_empty(), "no snapshot may be made");
    });
}
