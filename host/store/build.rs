//! Rebuilds the crate when a migration changes: sqlx's `migrate!` embeds the
//! files under `migrations/` at compile time, and cargo does not watch them
//! on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
