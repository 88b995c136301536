//! Emulators of the PSA and vendor APIs Trueup talks to.
//!
//! Each emulator serves one product's published API shape (paths, field
//! names, auth headers, paging and rate-limit answers, see
//! `../shared/reference/api-facts.md`) on a loopback port, over data derived
//! deterministically from one shared [`world::World`]. Tests start them
//! in-process with [`start`]; the demo and manual runs use the
//! `trueup-emulators` binary.
//!
//! Every emulator also serves the `/_emulator` admin routes from
//! [`faults`] (fault switches, request counters) and its own inspection
//! routes, documented in its module.

pub mod catalog;
pub mod common;
pub mod faults;
pub mod vendor_common;
pub mod world;

pub mod autotask;
pub mod connectwise;
pub mod halopsa;
pub mod huntress;
pub mod microsoft;
pub mod ninjaone;
pub mod pax8;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::faults::Faults;
use crate::world::World;

/// The products emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ConnectWise Manage / PSA REST (`/v4_6_release/apis/3.0`).
    ConnectWise,
    /// Autotask REST (`/atservicesrest/v1.0`), with the zone lookup.
    Autotask,
    /// HaloPSA (`/auth/token`, `/api/...`).
    HaloPsa,
    /// Microsoft identity platform tokens, Graph `subscribedSkus` and
    /// Partner Center subscriptions, on one origin.
    Microsoft,
    /// Pax8 Partner API (`/v1/...`).
    Pax8,
    /// NinjaOne RMM (`/oauth/token`, `/api/v2/...`).
    NinjaOne,
    /// Huntress (`/v1/...`).
    Huntress,
}

impl Kind {
    /// Every emulator, PSAs first.
    pub const ALL: [Kind; 7] = [
        Kind::ConnectWise,
        Kind::Autotask,
        Kind::HaloPsa,
        Kind::Microsoft,
        Kind::Pax8,
        Kind::NinjaOne,
        Kind::Huntress,
    ];

    /// The kebab-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConnectWise => "connect-wise",
            Kind::Autotask => "autotask",
            Kind::HaloPsa => "halo-psa",
            Kind::Microsoft => "microsoft",
            Kind::Pax8 => "pax8",
            Kind::NinjaOne => "ninja-one",
            Kind::Huntress => "huntress",
        }
    }
}

/// Per-product knobs (page sizes, rate limits, world size overrides).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// ConnectWise knobs.
    pub connectwise: connectwise::Settings,
    /// Autotask knobs.
    pub autotask: autotask::Settings,
    /// HaloPSA knobs.
    pub halopsa: halopsa::Settings,
    /// Microsoft knobs.
    pub microsoft: microsoft::Settings,
    /// Pax8 knobs.
    pub pax8: pax8::Settings,
    /// NinjaOne knobs.
    pub ninjaone: ninjaone::Settings,
    /// Huntress knobs.
    pub huntress: huntress::Settings,
}

/// What an emulator's router is built from.
#[derive(Debug, Clone)]
pub struct EmulatorContext {
    /// The shared world.
    pub world: Arc<World>,
    /// The emulator's own fault state (also reachable at `/_emulator`).
    pub faults: Arc<Faults>,
    /// The emulator's own origin, e.g. `http://127.0.0.1:41234`, for links
    /// it must put in responses (`Link` headers, `nextPageUrl`, zone URLs).
    pub base_url: String,
    /// Product knobs.
    pub settings: Settings,
}

/// A running emulator.
#[derive(Debug)]
pub struct Running {
    /// Which product.
    pub kind: Kind,
    /// Its origin, e.g. `http://127.0.0.1:41234`.
    pub base_url: String,
    /// Its fault switches and counters.
    pub faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl Running {
    /// The bound address.
    pub fn addr(&self) -> &str {
        self.base_url.trim_start_matches("http://")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the router of one emulator.
pub fn router(kind: Kind, ctx: &EmulatorContext) -> Router {
    // PSA emulators return their `/_emulator/<psa>` inspection routes apart,
    // merged after the fault layer so faults never touch them.
    let (api, inspection) = match kind {
        Kind::ConnectWise => connectwise::routers(ctx),
        Kind::Autotask => autotask::routers(ctx),
        Kind::HaloPsa => halopsa::routers(ctx),
        Kind::Microsoft => microsoft::routers(ctx),
        Kind::Pax8 => pax8::routers(ctx),
        Kind::NinjaOne => ninjaone::routers(ctx),
        Kind::Huntress => huntress::routers(ctx),
    };
    faults::wrap(api, ctx.faults.clone()).merge(inspection)
}

/// Starts one emulator on `bind` (port 0 picks a free port).
pub async fn start(
    kind: Kind,
    world: Arc<World>,
    settings: Settings,
    bind: SocketAddr,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let faults = Faults::new();
    let ctx = EmulatorContext {
        world,
        faults: faults.clone(),
        base_url: base_url.clone(),
        settings,
    };
    let app = router(kind, &ctx);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, emulator = kind.name(), "emulator stopped");
        }
    });
    Ok(Running {
        kind,
        base_url,
        faults,
        task,
    })
}
