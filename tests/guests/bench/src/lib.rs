//! Returns usage records built in memory, so a benchmark measures the host's
//! call and lifting costs, not a network.

use trueup_connector::prelude::*;
use trueup_connector::usage::{UsagePageBuilder, UsageRef};
use trueup_connector::vendor::{self, AccountPage, UsagePage, UsageRequest};
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
        if config::get_or("prebuilt", "false") == "true" {
            // Build once per instance and hand out copies: isolates the
            // host's cost (lowering, lifting, converting) from the guest's
            // own record building.
            return Ok(PREBUILT.with(|cell| {
                cell.borrow_mut()
                    .get_or_insert_with(|| build(records))
                    .clone()
            }));
        }
        Ok(build(records))
    }
}

thread_local! {
    static PREBUILT: std::cell::RefCell<Option<UsagePage>> = const { std::cell::RefCell::new(None) };
}

fn build(records: u32) -> UsagePage {
    {
        let mut page = UsagePageBuilder::with_capacity(records as usize);
        let one = values::integer(1);
        let accounts: Vec<String> = (0..records.div_ceil(100))
            .map(|a| format!("org-{a}"))
            .collect();
        for i in 0..records {
            let class = CLASSES[(i % 4) as usize];
            page.push_ref(UsageRef {
                account_id: &accounts[(i / 100) as usize],
                sku_id: class,
                sku_name: class,
                quantity: one,
                unit: "device",
                unit_cost: None,
                billing_term: None,
                commitment_end: None,
                attributes: &[
                    ("approval-status", "APPROVED"),
                    ("device-class", class),
                    ("last-seen", "2026-11-20"),
                ],
            });
        }
        page.finish(None)
    }
}

trueup_connector::export_vendor!(Bench);
