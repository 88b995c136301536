//! Trueup vendor connector for NinjaOne RMM (public API v2).
//!
//! - Accounts are organisations: `GET /api/v2/organizations?pageSize=&after=`.
//! - Usage is one record per device (quantity 1, SKU = `nodeClass`), from
//!   `GET /api/v2/devices` (or `/api/v2/devices-detailed` with
//!   `os_details = true`, which adds `os-name`), filtered to one
//!   organisation with the device filter `df=org = <id>`, or unfiltered for
//!   every organisation at once (`usage-all-accounts`).
//! - Auth: OAuth client credentials at `POST /ws/oauth/token` (form body;
//!   the client secret is placed by the host), bearer token cached for the
//!   life of the instance.
//!
//! Paging follows the published v2 spec: list endpoints answer a plain JSON
//! array in ascending id order and `after` is the last id of the previous
//! page. Only an empty page ends a listing: the service may serve fewer
//! than `pageSize` on any page (it publishes no maximum), so a short page
//! is never taken as the last (see `docs/connectors/ninjaone.md`). A page
//! whose last id does not move past `after` is reported, never followed.
//!
//! `devices` reads a device page into rows; `connector` pages through the
//! API and serves those rows as usage records.

mod connector;
mod devices;
