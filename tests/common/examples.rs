//! The crate's example programs, for tests that run them as a user would.

// Each test crate that includes this file uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// `target/<profile>/examples/<name>`, after building every example of `all`
/// (once per test process) with the profile and target directory this test was
/// built with.
pub fn example(all: &[&str], name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet"]);
        for example in all {
            command.args(["--example", example]);
        }
        let status = command
            .args(["--profile", &profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(profile_dir.parent().expect("a target directory"))
            .stdin(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the examples {all:?} did not build");
        *built = true;
    }
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "no example at {}", path.display());
    path
}
