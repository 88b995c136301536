//! `trueup token create | list | revoke`: API tokens for automation
//! (`Authorization: Bearer tu_...`). A token's value is printed once; the
//! store keeps only its SHA-256.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use trueup::auth::{Role, new_api_token};
use trueup::config::Config;
use trueup::web::auth::{role_of, stored_role};
use trueup_store::Store;
use trueup_store::auth::ApiTokenId;

use super::user::parse_role;

/// `trueup token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// A name for people ("billing export").
        #[arg(long)]
        name: String,
        /// admin, approver or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token.
    Revoke {
        /// The token's id (from `list`).
        id: i64,
    },
}

/// Runs `trueup token ...`.
///
/// # Errors
/// The store cannot be opened or the token is unknown.
pub fn run(config: Arc<Config>, args: TokenArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = Store::connect(&config.store_url()).await?;
        let by = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        );
        match args.command {
            TokenCommand::Create { name, role } => {
                let value = new_api_token();
                let id = store
                    .create_api_token(&name, &value, stored_role(role), &by, Utc::now())
                    .await?;
                println!("token {} ({name}, {}):", id.0, role.as_str());
                println!("{value}");
            }
            TokenCommand::List => {
                for t in store.api_tokens().await? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        t.id.0,
                        t.name,
                        role_of(t.role).as_str(),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                store.revoke_api_token(ApiTokenId(id), Utc::now()).await?;
                println!("token {id} revoked");
            }
        }
        store.close().await;
        Ok(())
    })
}
