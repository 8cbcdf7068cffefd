//! `cargo xtask <task>`: the project's one command line.
//!
//! Parses flags, finds the project root and calls the libraries; the work
//! lives in `builder`, `image-spec`, `vm-tests`, `hetzner` and `bench`. Exit codes: 0 success,
//! 1 failure (the error chain is printed once), 2 bad usage (clap); each
//! command's, and its `--json` output, in docs/cli.md.

mod bench;
mod build_image;
mod ci;
mod doctor;
mod fetch;
mod flags;
mod lock;
mod output;
mod sources;
mod upload;
mod verify_repro;
mod vm_test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use flags::{Cli, Task};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Lock(args) => lock::run(&args),
        Task::Fetch(args) => fetch::run(&args),
        Task::BuildImage(args) => build_image::run(&args),
        Task::VmTest(args) => vm_test::run(&args),
        Task::VerifyRepro(args) => verify_repro::run(&args),
        Task::Upload(args) => upload::run(&args),
        Task::Doctor(args) => doctor::run(&args),
        Task::Ci(args) => ci::run(&args),
        Task::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The project root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The image a task works on: `explicit`, else `target/image/<name>.raw`
/// with `<name>` from image.toml; it must exist.
pub fn built_image(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let root = project_root();
    let image = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let spec = builder::locking::Project::new(&root.join("image.toml")).read_spec()?;
            root.join("target/image")
                .join(format!("{}.raw", spec.image.name))
        }
    };
    if !image.is_file() {
        anyhow::bail!(
            "{} does not exist: run `cargo xtask build-image` first",
            image.display()
        );
    }
    Ok(image)
}
