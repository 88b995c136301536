//! The `trueup` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use trueup::config::{Config, DEFAULT_CONFIG_FILE};

mod commands;

#[derive(Debug, Parser)]
#[command(name = "trueup", version, about = "Billing reconciliation for MSPs")]
struct Cli {
    /// The configuration file (default: ./trueup.toml when present).
    #[arg(long, global = true, env = "TRUEUP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and check connector plugins.
    Plugin(commands::plugin::PluginArgs),
    /// Reconcile a snapshot file and print the service cards.
    Reconcile(commands::reconcile::ReconcileArgs),
    /// Check, test, explain and dry-run the Rhai mapping rules.
    Rules(commands::rules::RulesArgs),
    /// Serve the UI and REST API with the job, schedule and write-back workers.
    Serve(commands::serve::ServeArgs),
    /// Run the demo: emulators, plugins, a sync and reconcile, then serve.
    Demo(commands::demo::DemoArgs),
    /// Manage local users.
    User(commands::user::UserArgs),
    /// Manage API tokens.
    Token(commands::token::TokenArgs),
    /// Import usage from CSV files; manage CSV profiles and push API keys.
    Import(commands::import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(&PathBuf::from(DEFAULT_CONFIG_FILE), false)?,
    };
    let config = Arc::new(config);
    match cli.command {
        Command::Plugin(args) => commands::plugin::run(config, args),
        Command::Reconcile(args) => commands::reconcile::run(args),
        Command::Rules(args) => commands::rules::run(config, args),
        Command::Serve(args) => commands::serve::run(config, args),
        Command::Demo(args) => commands::demo::run(args),
        Command::User(args) => commands::user::run(config, args),
        Command::Token(args) => commands::token::run(config, args),
        Command::Import(args) => commands::import::run(config, args),
    }
}
