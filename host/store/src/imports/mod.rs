//! Usage that arrives without a sync: push integrations (API keys that
//! push one vendor's usage) in `push`, CSV import profiles and import
//! records in `csv`, and large CSV imports written in chunks in `streamed`.
//! Their rows go to the usage ledger (`crate::usage`).

mod csv;
mod push;
mod streamed;

pub use crate::ids::{ImportId, PushIntegrationId};
pub use csv::{CsvImport, CsvProfile, ImportStatus, NewCsvImport};
pub use push::PushIntegration;
pub use streamed::{CsvImportWriter, NewStreamedImport};
