//! `trueup openapi`: prints the OpenAPI 3.1 document that `trueup serve`
//! serves at `/api/openapi.json` (the web API and the push API), so docs
//! and client generators can have it without a running server.

use std::io::Write;

use anyhow::Context;
use clap::Args;

/// `trueup openapi`.
#[derive(Debug, Args)]
pub struct OpenApiArgs {
    /// Leave out the push API (what a server without it serves).
    #[arg(long)]
    no_push: bool,
}

/// Prints the document to standard output.
///
/// # Errors
/// Standard output cannot be written.
pub fn run(args: &OpenApiArgs) -> anyhow::Result<()> {
    let document = trueup::web::openapi::document(!args.no_push);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{document}").context("writing the OpenAPI document to standard output")
}
