//! `trueup user add | list | password`: local users (argon2id hashes).
//! A password is read from standard input when it is not a terminal;
//! otherwise one is generated and printed once.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use trueup::auth::{Role, hash_password, random_token};
use trueup::config::Config;
use trueup::web::auth::stored_role;
use trueup_store::Store;
use trueup_store::audit::NewAuditEntry;

/// `trueup user ...`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// The login name.
        name: String,
        /// admin, approver or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (ends the user's sessions).
    Password {
        /// The login name.
        name: String,
    },
    /// List users.
    List,
}

/// Parses a role name for clap.
pub fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: admin, approver or viewer"))
}

/// The password from standard input (first line) when it is piped, else a
/// generated one; `true` when generated.
fn password() -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if !line.is_empty() {
            return Ok((line, false));
        }
    }
    Ok((random_token(), true))
}

/// Runs `trueup user ...`.
///
/// # Errors
/// The store cannot be opened, the user exists (add) or not (password), a
/// weak password.
pub fn run(config: Arc<Config>, args: UserArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = Store::connect(&config.store_url()).await?;
        let now = Utc::now();
        match args.command {
            UserCommand::Add { name, role } => {
                let (password, generated) = password()?;
                let hash = hash_password(&password)?;
                store
                    .create_user(&name, &hash, stored_role(role), now)
                    .await?;
                audit(
                    &store,
                    "user.create",
                    &name,
                    serde_json::json!({ "role": role }),
                )
                .await?;
                println!("created user {name} ({})", role.as_str());
                if generated {
                    println!("password: {password}");
                    println!("(shown once; change it with `trueup user password {name}`)");
                }
            }
            UserCommand::Password { name } => {
                let Some(user) = store.user_by_name(&name).await? else {
                    bail!("no user {name:?}; create it with `trueup user add {name} --role ...`");
                };
                let (password, generated) = password()?;
                let hash = hash_password(&password)?;
                store
                    .update_user(user.id, Some(&hash), None, None, now)
                    .await?;
                audit(&store, "user.password", &name, serde_json::json!({})).await?;
                println!("password of {name} changed; their sessions ended");
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::List => {
                for user in store.users().await? {
                    println!(
                        "{}\t{}\t{}",
                        user.username,
                        trueup::web::auth::role_of(user.role).as_str(),
                        if user.disabled { "disabled" } else { "active" }
                    );
                }
            }
        }
        store.close().await;
        Ok(())
    })
}

async fn audit(
    store: &Store,
    action: &str,
    name: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .audit(&NewAuditEntry {
            at: Utc::now(),
            actor: format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            action: action.to_owned(),
            subject: format!("user:{name}"),
            details,
        })
        .await?;
    Ok(())
}
