//! Returns usage records built in memory, so a benchmark measures the host's
//! call and lifting costs, not a network.

use trueup_connector::prelude::*;
use trueup_connector::vendor::{self, AccountPage, UsagePage, UsageRecord, UsageRequest};
use trueup_connector::{config, values};

struct Bench;

const CLASSES: [&str; 4] = ["WINDOWS_WORKSTATION", "WINDOWS_SERVER", "MAC", "NMS_SWITCH"];

impl vendor::Guest for Bench {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "test.bench".into(),
            name: "Benchmark guest".into(),
            version: "0.1.0".into(),
            capabilities: vec!["usage-all-accounts".into()],
        }
    }

    fn list_accounts(_cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        Ok(AccountPage {
            items: vec![],
            next_cursor: None,
        })
    }

    fn list_usage(_request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let records: u32 = config::parse_or("records", 10_000)?;
        let items = (0..records)
            .map(|i| UsageRecord {
                account_id: format!("org-{}", i / 100),
                sku_id: CLASSES[(i % 4) as usize].into(),
                sku_name: CLASSES[(i % 4) as usize].into(),
                quantity: values::integer(1),
                unit: "device".into(),
                unit_cost: None,
                billing_term: None,
                commitment_end: None,
                attributes: vec![
                    ("device-class".into(), CLASSES[(i % 4) as usize].into()),
                    ("approval-status".into(), "APPROVED".into()),
                    ("last-seen".into(), "2026-11-20".into()),
                ],
            })
            .collect();
        Ok(UsagePage {
            items,
            next_cursor: None,
        })
    }
}

trueup_connector::export_vendor!(Bench);
