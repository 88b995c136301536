//! `trueup-plugin-build`: builds guest crates into Trueup plugin directories.
//!
//! For every member of the guest workspace (`plugins/Cargo.toml`) that has a
//! `plugin.toml` beside its `Cargo.toml`, it runs cargo for
//! `wasm32-unknown-unknown` (one invocation per crate, so each gets only its
//! own SDK feature), turns the core module into a component with
//! `wit-component`, validates it, and writes
//! `<out>/<plugin id>/{plugin.wasm, plugin.toml}`.
//!
//! The toolchain comes from the environment `scripts/setup` prepares:
//! - `TRUEUP_GUEST_CARGO`: the cargo to run (default `cargo`);
//! - `TRUEUP_GUEST_CARGO_ARGS`: extra arguments, whitespace-separated (the
//!   Debian route passes `-Zbuild-std=std,panic_abort`);
//! - `RUSTC`, `RUSTC_BOOTSTRAP`, `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER`
//!   and friends are passed through untouched.
//!
//! Usage: `trueup-plugin-build [--workspace DIR] [--out DIR] [--target-dir DIR] [NAME...]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The guest target: no WASI; a connector imports only what its world does.
const GUEST_TARGET: &str = "wasm32-unknown-unknown";

#[derive(Debug)]
struct Args {
    workspace: PathBuf,
    out: PathBuf,
    target_dir: PathBuf,
    only: Vec<String>,
}

#[derive(Deserialize)]
struct WorkspaceManifest {
    workspace: WorkspaceSection,
}

#[derive(Deserialize)]
struct WorkspaceSection {
    members: Vec<String>,
}

#[derive(Deserialize)]
struct PackageManifest {
    package: PackageSection,
}

#[derive(Deserialize)]
struct PackageSection {
    name: String,
}

/// Only the field this tool needs; the host validates the whole manifest.
#[derive(Deserialize)]
struct PluginManifestId {
    id: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let root = std::env::current_dir().context("reading the current directory")?;
    let mut args = Args {
        workspace: root.join("plugins"),
        out: root.join("target/plugins"),
        target_dir: root.join("target/guests"),
        only: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |flag: &str| {
            iter.next()
                .map(PathBuf::from)
                .with_context(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--workspace" => args.workspace = value("--workspace")?,
            "--out" => args.out = value("--out")?,
            "--target-dir" => args.target_dir = value("--target-dir")?,
            "-h" | "--help" => {
                println!(
                    "usage: trueup-plugin-build [--workspace DIR] [--out DIR] [--target-dir DIR] [CRATE...]"
                );
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            name => args.only.push(name.to_owned()),
        }
    }
    Ok(args)
}

/// Guest crates with a `plugin.toml`: (crate name, crate directory).
fn plugin_crates(workspace: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let manifest_path = workspace.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: WorkspaceManifest =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest_path.display()))?;
    let mut crates = Vec::new();
    for member in manifest.workspace.members {
        let dir = workspace.join(&member);
        if !dir.join("plugin.toml").is_file() {
            continue;
        }
        let cargo_toml = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&cargo_toml)
            .with_context(|| format!("reading {}", cargo_toml.display()))?;
        let package: PackageManifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", cargo_toml.display()))?;
        crates.push((package.package.name, dir));
    }
    Ok(crates)
}

fn build_core_module(args: &Args, name: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("TRUEUP_GUEST_CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let extra = std::env::var("TRUEUP_GUEST_CARGO_ARGS").unwrap_or_default();
    let status = Command::new(&cargo)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(args.workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&args.target_dir)
        .arg("-p")
        .arg(name)
        .args(extra.split_whitespace())
        .status()
        .with_context(|| {
            format!("running {cargo} (set TRUEUP_GUEST_CARGO or run scripts/setup)")
        })?;
    if !status.success() {
        bail!("building the guest crate {name} failed ({status}); see cargo's output above");
    }
    let module = args
        .target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !module.is_file() {
        bail!(
            "cargo built {name} but {} is missing: is the crate a cdylib?",
            module.display()
        );
    }
    Ok(module)
}

fn componentize(module: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .with_context(|| format!("reading the component type of {}", module.display()))?
        .encode()
        .with_context(|| format!("encoding {} as a component", module.display()))
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees
/// half a component.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let crates = plugin_crates(&args.workspace)?;
    let selected: Vec<_> = crates
        .iter()
        .filter(|(name, _)| args.only.is_empty() || args.only.contains(name))
        .collect();
    for wanted in &args.only {
        if !crates.iter().any(|(name, _)| name == wanted) {
            bail!(
                "no guest crate named {wanted} with a plugin.toml in {}",
                args.workspace.display()
            );
        }
    }
    for (name, dir) in selected {
        let started = Instant::now();
        let module = build_core_module(&args, name)?;
        let component = componentize(&module)?;
        let manifest_text = std::fs::read_to_string(dir.join("plugin.toml"))
            .with_context(|| format!("reading {}/plugin.toml", dir.display()))?;
        let id: PluginManifestId = toml::from_str(&manifest_text)
            .with_context(|| format!("reading `id` from {}/plugin.toml", dir.display()))?;
        let out = args.out.join(&id.id);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        write_atomically(&out.join("plugin.wasm"), &component)?;
        write_atomically(&out.join("plugin.toml"), manifest_text.as_bytes())?;
        println!(
            "built {:<28} -> {} ({} KiB, {:.1?})",
            id.id,
            out.display(),
            component.len() / 1024,
            started.elapsed()
        );
    }
    Ok(())
}
