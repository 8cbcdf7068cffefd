//! `cargo xtask upload`: publish the image as a Hetzner Cloud snapshot.

use anyhow::{Context, Result};
use hetzner::api::{Client, ClientOptions, endpoint_from_env};
use hetzner::image::ImageInfo;
use hetzner::upload::{self, Outcome, UploadOptions};
use hetzner::{Interrupt, Token};

use crate::flags::{UploadArgs, UploadCommand};

pub fn run(args: &UploadArgs) -> Result<()> {
    let token = Token::from_env()?;
    let client = Client::new(&endpoint_from_env(), token, ClientOptions::default())?;
    if let Some(UploadCommand::Cleanup) = args.command {
        let done = upload::cleanup(&client)?;
        eprintln!(
            "upload cleanup: deleted {} server(s) {:?} and {} SSH key(s) {:?}",
            done.servers.len(),
            done.servers,
            done.ssh_keys.len(),
            done.ssh_keys
        );
        return Ok(());
    }
    let path = crate::built_image(args.image.as_deref())?;
    let image = ImageInfo::load(&path)?;
    let options = UploadOptions {
        location: args.location.clone(),
        server_type: args.server_type.clone(),
        labels: args.labels.iter().cloned().collect(),
        description: args.description.clone(),
        force: args.force,
        ..UploadOptions::default()
    };
    let interrupt = Interrupt::on_ctrl_c().context("installing the Ctrl-C handler")?;
    let outcome = upload::upload(&client, &image, &options, &interrupt)?;
    let (snapshot, note) = match &outcome {
        Outcome::Uploaded(s) => (s, "now holds"),
        Outcome::AlreadyPresent(s) => (s, "already held"),
    };
    println!("{}", snapshot.id);
    eprintln!(
        "upload: snapshot {} {note} {} (sha256 {}){}\n{}",
        snapshot.id,
        image.path.display(),
        image.sha256,
        match outcome {
            Outcome::AlreadyPresent(_) => ": nothing uploaded (--force uploads again)",
            Outcome::Uploaded(_) => "",
        },
        upload::usage(snapshot, &options)
    );
    Ok(())
}
