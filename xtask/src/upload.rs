//! `cargo xtask upload`: publish the image as a Hetzner Cloud snapshot.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hetzner::api::{Client, ClientOptions, endpoint_from_env};
use hetzner::image::ImageInfo;
use hetzner::upload::{self, CleanupOptions, Outcome, Report, UploadOptions};
use hetzner::{Interrupt, Token};

use crate::flags::{CleanupArgs, OutputFormat, UploadArgs, UploadCommand};
use crate::output::Out;

pub fn run(args: &UploadArgs) -> Result<()> {
    let token = Token::from_env()?;
    let client_options = ClientOptions {
        debug: args.debug,
        ..ClientOptions::default()
    };
    let client = Client::new(&endpoint_from_env(), token, client_options)?;
    // `-o json` is the older spelling of `--json`.
    let out = Out::new(args.json || args.output == OutputFormat::Json)?;
    if let Some(UploadCommand::Cleanup(c)) = &args.command {
        return cleanup(&client, c, out);
    }
    let path = crate::built_image(args.image.as_deref())?;
    let image = ImageInfo::load(&path)?;
    let options = UploadOptions {
        location: args.location.clone(),
        server_type: args.server_type.clone(),
        labels: args.labels.iter().cloned().collect(),
        description: args.description.clone(),
        force: args.force,
        max_rate: args.max_rate,
        ..UploadOptions::default()
    };
    let interrupt = Interrupt::on_ctrl_c().context("installing the Ctrl-C handler")?;
    let outcome = upload::upload(&client, &image, &options, &interrupt)?;
    let (snapshot, note, server_type) = match &outcome {
        Outcome::Uploaded(s, w) => (s, "now holds", w.server_type.clone()),
        Outcome::AlreadyPresent(s) => (
            s,
            "already held",
            args.server_type.clone().unwrap_or_else(|| {
                upload::preflight::default_server_type(&image.architecture).to_string()
            }),
        ),
    };
    if out.is_json() {
        out.report(&Report::new(&image, &outcome).to_json())?;
    } else {
        println!("{}", snapshot.id);
    }
    eprintln!(
        "upload: snapshot {} {note} {} (sha256 {}){}\n{}",
        snapshot.id,
        image.path.display(),
        image.sha256,
        match outcome {
            Outcome::AlreadyPresent(_) => ": nothing uploaded (--force uploads again)",
            Outcome::Uploaded(..) => "",
        },
        upload::usage(snapshot, &server_type, &options)
    );
    Ok(())
}

fn cleanup(client: &Client, args: &CleanupArgs, out: Out) -> Result<()> {
    if !(args.older_than.is_finite() && args.older_than >= 0.0) {
        bail!(
            "--older-than {}: give a number of hours ≥ 0",
            args.older_than
        );
    }
    let options = CleanupOptions {
        older_than: Duration::from_secs_f64(args.older_than * 3600.0),
        all: args.all,
    };
    let done = upload::cleanup(client, &options);
    out.report(&done.to_json())?;
    eprintln!("upload cleanup:\n{}", done.summary());
    if !done.errors.is_empty() {
        bail!(
            "upload cleanup: {} resource(s) could not be deleted (above); run it again, or delete them in the Hetzner console",
            done.errors.len()
        );
    }
    Ok(())
}
