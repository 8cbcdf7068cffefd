//! The checks made from the API before anything is created: the server
//! type exists, is not deprecated, is offered in the location, has the
//! image's architecture and a disk at least the image's size. Each refusal
//! lists the choices that would work.

use crate::api::types::ServerType;
use crate::image::ImageInfo;

/// The server type chosen when none is given, per architecture.
pub fn default_server_type(architecture: &str) -> &'static str {
    match architecture {
        "arm" => "cax11",
        _ => "cx23",
    }
}

/// A type's disk in bytes (the API gives GB, 10^9 bytes).
fn disk_bytes(t: &ServerType) -> u64 {
    (t.disk * 1e9) as u64
}

/// Whether `t` could take the upload of `image` in `location`.
fn fits(t: &ServerType, image: &ImageInfo, location: &str) -> bool {
    t.architecture == image.architecture
        && !t.is_deprecated()
        && t.offered_in(location)
        && disk_bytes(t) >= image.len
}

/// `a, b, c` or a note that there is none.
fn choices(names: Vec<String>, none: &str) -> String {
    match names.is_empty() {
        true => none.to_string(),
        false => names.join(", "),
    }
}

/// The server type to use: `wanted`, or the default for the image's
/// architecture; an error naming the fault and the choices otherwise.
pub fn check(
    types: &[ServerType],
    wanted: Option<&str>,
    image: &ImageInfo,
    location: &str,
) -> Result<ServerType, String> {
    let name = wanted.unwrap_or_else(|| default_server_type(&image.architecture));
    let working = || {
        let mut names: Vec<String> = types
            .iter()
            .filter(|t| fits(t, image, location))
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        choices(
            names,
            "none here; try another --location (fsn1, nbg1, hel1, ash, hil, sin)",
        )
    };
    let flag = match wanted {
        Some(_) => "--server-type",
        None => "the default server type",
    };
    let Some(t) = types.iter().find(|t| t.name == name) else {
        return Err(format!(
            "{flag} `{name}` does not exist; types that would work in {location}: {}",
            working()
        ));
    };
    if t.architecture != image.architecture {
        return Err(format!(
            "{flag} `{name}` is {}, the image is {}: choose one of {}",
            t.architecture,
            image.architecture,
            working()
        ));
    }
    if t.is_deprecated() {
        return Err(format!(
            "{flag} `{name}` is deprecated; choose one of {}",
            working()
        ));
    }
    if !t.offered_in(location) {
        let mut places: Vec<String> = t
            .locations
            .iter()
            .filter(|l| l.deprecation.is_none())
            .map(|l| l.name.clone())
            .collect();
        places.sort();
        return Err(format!(
            "{flag} `{name}` is not offered in --location {location}; it is in: {}; \
             types offered in {location}: {}",
            choices(places, "no location"),
            working()
        ));
    }
    if disk_bytes(t) < image.len {
        return Err(format!(
            "{flag} `{name}` has a {} GB disk, the image {} is {} bytes ({:.1} GB): \
             choose a type with a larger disk: {}",
            t.disk,
            image.path.display(),
            image.len,
            image.len as f64 / 1e9,
            working()
        ));
    }
    Ok(t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::ServerTypeLocation;

    fn t(name: &str, arch: &str, disk: f64, locations: &[&str], deprecated: bool) -> ServerType {
        ServerType {
            name: name.into(),
            architecture: arch.into(),
            disk,
            deprecated: Some(deprecated),
            deprecation: None,
            locations: locations
                .iter()
                .map(|l| ServerTypeLocation {
                    name: l.to_string(),
                    deprecation: None,
                })
                .collect(),
        }
    }

    fn image(arch: &str, len: u64) -> ImageInfo {
        ImageInfo {
            path: "x.raw".into(),
            len,
            sha256: "0".repeat(64),
            spec_name: "x".into(),
            openclaw_version: "1".into(),
            build_date: "2026-01-01".into(),
            architecture: arch.into(),
        }
    }

    #[test]
    fn each_fault_names_what_would_work() {
        let types = [
            t("cx23", "x86", 40.0, &["fsn1", "nbg1"], false),
            t("cx33", "x86", 80.0, &["fsn1"], false),
            t("cx11", "x86", 20.0, &["fsn1"], true),
            t("cax11", "arm", 40.0, &["fsn1"], false),
            t("cpx11", "x86", 40.0, &["ash"], false),
        ];
        let small = image("x86", 3 << 30);
        assert_eq!(check(&types, None, &small, "fsn1").unwrap().name, "cx23");
        assert_eq!(
            check(&types, None, &image("arm", 1), "fsn1").unwrap().name,
            "cax11"
        );
        let e = check(&types, Some("cx99"), &small, "fsn1").unwrap_err();
        assert!(e.contains("`cx99` does not exist"), "{e}");
        assert!(e.ends_with("cx23, cx33"), "{e}");
        let e = check(&types, Some("cx11"), &small, "fsn1").unwrap_err();
        assert!(
            e.contains("`cx11` is deprecated; choose one of cx23, cx33"),
            "{e}"
        );
        let e = check(&types, Some("cpx11"), &small, "fsn1").unwrap_err();
        assert!(
            e.contains("not offered in --location fsn1; it is in: ash"),
            "{e}"
        );
        let e = check(&types, Some("cx23"), &image("arm", 1), "fsn1").unwrap_err();
        assert!(
            e.contains("`cx23` is x86, the image is arm: choose one of cax11"),
            "{e}"
        );
        let e = check(&types, None, &image("x86", 50_000_000_000), "fsn1").unwrap_err();
        assert!(e.contains("has a 40 GB disk"), "{e}");
        assert!(e.ends_with("larger disk: cx33"), "{e}");
        let e = check(&types, None, &small, "sin").unwrap_err();
        assert!(e.contains("none here; try another --location"), "{e}");
    }
}
