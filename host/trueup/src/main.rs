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
    /// Reconcile the store (or a snapshot file) as of a date and print the result.
    Reconcile(commands::reconcile::ReconcileArgs),
    /// Check, test, explain and dry-run the Rhai mapping rules.
    Rules(commands::rules::RulesArgs),
    /// Serve the UI and REST API with the job, schedule and write-back workers.
    Serve(commands::serve::ServeArgs),
    /// Run the demo: emulators, plugins, a sync and reconcile, then serve.
    #[cfg(feature = "demo")]
    Demo(commands::demo::DemoArgs),
    /// Not in this build: the demo needs the default `demo` feature.
    #[cfg(not(feature = "demo"))]
    #[command(hide = true)]
    Demo(NotBuilt),
    /// Manage local users.
    User(commands::user::UserArgs),
    /// Manage API tokens.
    Token(commands::token::TokenArgs),
    /// Import usage from CSV files; manage CSV profiles and push API keys.
    Import(commands::import::ImportArgs),
    /// Print the OpenAPI 3.1 document served at /api/openapi.json.
    Openapi(commands::openapi::OpenApiArgs),
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
    // The data directory and database are created private (0700/0600)
    // before anything opens them; wider modes found are reported.
    if !matches!(cli.command, Command::Openapi(_) | Command::Demo(_)) {
        let config_file = cli
            .config
            .clone()
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()));
        for warning in trueup::server::files::prepare(&config, config_file.as_deref())
            .map_err(anyhow::Error::msg)?
        {
            eprintln!("warning: {warning}");
        }
    }
    let config = Arc::new(config);
    match cli.command {
        Command::Plugin(args) => commands::plugin::run(config, args),
        Command::Reconcile(args) => commands::reconcile::run(config, args),
        Command::Rules(args) => commands::rules::run(config, args),
        Command::Serve(args) => commands::serve::run(config, args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => commands::demo::run(args),
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => Err(not_built("demo")),
        Command::User(args) => commands::user::run(config, args),
        Command::Token(args) => commands::token::run(config, args),
        Command::Import(args) => commands::import::run(config, args),
        Command::Openapi(args) => commands::openapi::run(&args),
    }
}

/// The arguments of a command this build leaves out: any, so that the
/// command answers [`not_built`] rather than a parse error.
#[cfg(not(feature = "demo"))]
#[derive(Debug, clap::Args)]
struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<std::ffi::OsString>,
}

/// Why `trueup <command>` is missing from a build without the `demo`
/// feature (the product build), and how to get it.
#[cfg(not(feature = "demo"))]
fn not_built(command: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`trueup {command}` is not in this build: it was built without the `demo` feature \
         (the product build, without the bundled emulators and the conformance kit). \
         Build with the default features to get it: `cargo build --release -p trueup`, \
         or run scripts/demo"
    )
}
