//! Gives the binary a build identity, `CONVERGE_BUILD_ID`: a hash of everything it is
//! built from. A plan cached by one build is never read by another, whose resource layout
//! or planning may differ. And the version it prints, `CONVERGE_VERSION`: the crate's, with
//! the package version when a package build sets `CONVERGE_PACKAGE_VERSION`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[path = "src/version.rs"]
mod version;

fn main() {
    let inputs = ["src", "vendor", "build.rs", "Cargo.toml", "Cargo.lock"];
    let mut files = Vec::new();
    for input in inputs {
        println!("cargo:rerun-if-changed={input}");
        collect(Path::new(input), &mut files);
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        hash.update(file.to_string_lossy().as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let id = hex(&hash.finalize()[..16]);
    println!("cargo:rustc-env=CONVERGE_BUILD_ID={id}");

    println!(
        "cargo:rerun-if-env-changed={}",
        version::PACKAGE_VERSION_VAR
    );
    let package = std::env::var(version::PACKAGE_VERSION_VAR).ok();
    let crate_version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    match version::describe(&crate_version, package.as_deref()) {
        Ok(v) => println!("cargo:rustc-env=CONVERGE_VERSION={v}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            collect(&entry.path(), out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
