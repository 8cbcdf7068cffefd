//! `cargo xtask bench`

use std::ffi::OsString;

use anyhow::Result;
use bench::{Options, Part};

use crate::flags::{BenchArgs, FirmwareChoice};
use crate::output::Out;
use crate::sources::{open_store, project};

pub fn run(args: &BenchArgs) -> Result<()> {
    let out = Out::new(args.json)?;
    let root = crate::project_root();
    let parts = if args.only.is_empty() {
        Part::ALL.to_vec()
    } else {
        let mut p = args
            .only
            .iter()
            .map(|s| Part::parse(s))
            .collect::<Result<Vec<_>>>()?;
        p.sort();
        p.dedup();
        p
    };
    let s = &args.sources;
    let mut source_args: Vec<OsString> = vec!["--spec".into(), s.spec.clone().into()];
    for (flag, value) in [
        ("--mirror", &s.mirror),
        ("--security-mirror", &s.security_mirror),
        ("--npm-registry", &s.npm_registry),
    ] {
        if let Some(v) = value {
            source_args.extend([flag.into(), v.into()]);
        }
    }
    if let Some(store) = &s.store {
        source_args.extend(["--store".into(), store.clone().into()]);
    }
    let firmwares = match args.firmware {
        FirmwareChoice::Bios => vec!["bios".to_string()],
        FirmwareChoice::Uefi => vec!["uefi".to_string()],
        FirmwareChoice::Both => vec!["bios".to_string(), "uefi".to_string()],
    };
    let result = bench::run(&Options {
        cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        project: project(s),
        store: open_store(s)?,
        root,
        source_args,
        runs: args.runs as usize,
        parts,
        firmwares,
    })?;
    if out.is_json() {
        out.report(&result.json())?;
    } else {
        print!("{}", result.table());
        println!("JSON: target/bench/bench.json; markdown table: target/bench/table.md");
    }
    Ok(())
}
