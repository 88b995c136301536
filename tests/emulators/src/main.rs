//! `trueup-emulators`: serves the PSA and vendor emulators on loopback ports
//! for the demo and for manual runs.
//!
//! It prints one JSON object mapping each emulator to its base URL (also
//! written to `--urls-file` when given), then serves until interrupted.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use trueup_emulators::world::World;
use trueup_emulators::{Kind, Settings, start};

#[derive(Debug, Parser)]
#[command(about = "Serve Trueup's PSA and vendor API emulators on loopback ports")]
struct Args {
    /// Seed of the emulated world; the same seed always serves the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of customers in the emulated world.
    #[arg(long, default_value_t = 120)]
    customers: usize,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// First port; emulators take consecutive ports in the order of
    /// `--only` (0 picks free ports).
    #[arg(long, default_value_t = 0)]
    port_base: u16,
    /// Emulators to serve (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the URL map to this file.
    #[arg(long)]
    urls_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kinds: Vec<Kind> = if args.only.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|name| {
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == name)
                    .with_context(|| {
                        let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                        format!("unknown emulator {name:?}; known: {}", known.join(", "))
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let world = Arc::new(World::new(args.seed, args.customers));
    let mut running = Vec::new();
    let mut urls = BTreeMap::new();
    for (offset, kind) in kinds.into_iter().enumerate() {
        let port = if args.port_base == 0 {
            0
        } else {
            args.port_base + offset as u16
        };
        let emulator = start(
            kind,
            world.clone(),
            Settings::default(),
            SocketAddr::new(args.host, port),
        )
        .await
        .with_context(|| format!("starting the {} emulator on port {port}", kind.name()))?;
        urls.insert(kind.name(), emulator.base_url.clone());
        running.push(emulator);
    }
    let json = serde_json::to_string_pretty(&urls)?;
    println!("{json}");
    if let Some(path) = &args.urls_file {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    tokio::signal::ctrl_c().await?;
    drop(running);
    Ok(())
}
