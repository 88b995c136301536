//! Scaffold: replaced by the emulator's implementation.

use axum::Router;

use crate::EmulatorContext;

/// Knobs for this emulator.
#[derive(Debug, Clone, Default)]
pub struct Settings {}

/// The emulator's API routes.
pub fn router(_ctx: &EmulatorContext) -> Router {
    Router::new()
}
