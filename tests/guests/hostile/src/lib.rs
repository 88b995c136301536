//! A connector that misbehaves on purpose. `list-usage` does what the
//! `behaviour` setting says; `list-accounts` always behaves, so a test can
//! show the host still works after containing a misbehaviour.

use trueup_connector::http::{Part, Secret};
use trueup_connector::prelude::*;
use trueup_connector::usage::{self, UsageRecord};
use trueup_connector::vendor::{self, Account, AccountPage, UsagePage, UsageRequest};
use trueup_connector::{config, log, values};

struct Hostile;

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        account_id: "acct".into(),
        sku_id: format!("sku-{}", i % 7),
        sku_name: "Widget".into(),
        quantity: values::integer(1),
        unit: "device".into(),
        unit_cost: None,
        billing_term: None,
        commitment_end: None,
        attributes: vec![],
    }
}

/// Recursion with small frames: wasm's own stack overflows.
#[inline(never)]
fn recurse_small(depth: u64) -> u64 {
    if depth == std::hint::black_box(u64::MAX) {
        return 0;
    }
    recurse_small(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

/// Recursion with frames in linear memory: the guest's shadow stack runs
/// off the bottom of its memory.
#[inline(never)]
fn recurse(depth: u64, trail: &mut [u64; 64]) -> u64 {
    // An opaque base case keeps the optimiser from proving the recursion
    // endless (and from turning it into something else).
    if depth == std::hint::black_box(u64::MAX) {
        return 0;
    }
    let mut frame = [depth; 32];
    std::hint::black_box(&mut frame);
    trail[(depth % 64) as usize] = frame[(depth % 32) as usize];
    recurse(depth + 1, trail).wrapping_add(trail[(depth % 7) as usize])
}

fn authorized_get(path: &str) -> Result<Response, ConnectorError> {
    let base = config::base_url("base_url")?;
    let token = Secret::get("token")?;
    Request::get(format!("{base}{path}"))
        .header_parts(
            "authorization",
            &[Part::Text("Bearer "), Part::Secret(&token)],
        )
        .send()?
        .ok()
}

impl vendor::Guest for Hostile {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            id: "test.hostile".into(),
            name: "Hostile test guest".into(),
            version: "0.1.0".into(),
            capabilities: vec![],
        }
    }

    fn list_accounts(_cursor: Option<String>) -> Result<AccountPage, ConnectorError> {
        let body = authorized_get("/accounts")?;
        let names: Vec<String> = String::from_utf8_lossy(&body.body)
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(AccountPage {
            items: names
                .into_iter()
                .enumerate()
                .map(|(i, name)| Account {
                    id: format!("a{i}"),
                    name,
                    domains: vec![],
                    attributes: vec![],
                })
                .collect(),
            next_cursor: None,
        })
    }

    fn list_usage(_request: UsageRequest) -> Result<UsagePage, ConnectorError> {
        let behaviour = config::get_or("behaviour", "well-behaved");
        match behaviour.as_str() {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xAB; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack-overflow" => Ok(usage::page(&[record(recurse_small(0))], None)),
            "shadow-stack-overflow" => {
                let mut trail = [0u64; 64];
                let n = recurse(0, &mut trail);
                Ok(usage::page(&[record(n)], None))
            }
            "huge-output" => Ok(usage::page(
                &(0..30_000).map(record).collect::<Vec<_>>(),
                None,
            )),
            "undeclared-host" => {
                Request::get("https://undeclared.example.org/steal").send()?;
                Ok(usage::page(&[], None))
            }
            "ungranted-host" => {
                Request::get("https://declared-only.example.com/data").send()?;
                Ok(usage::page(&[], None))
            }
            "other-secret" => {
                let stolen = Secret::get("api_key")?;
                let base = config::base_url("base_url")?;
                Request::get(format!("{base}/exfiltrate"))
                    .header_parts("x-stolen", &[Part::Secret(&stolen)])
                    .send()?;
                Ok(usage::page(&[], None))
            }
            "panic" => panic!("the hostile guest panics on purpose"),
            "slow-http" => {
                authorized_get("/slow")?;
                Ok(usage::page(&[], None))
            }
            "cursor-loop" => Ok(usage::page(&[record(1)], Some("page-2".into()))),
            "bad-date" => {
                let mut bad = record(1);
                bad.commitment_end = Some(Date {
                    year: 2025,
                    month: 2,
                    day: 30,
                });
                Ok(usage::page(&[bad], None))
            }
            "echo-secret" => {
                // The test server echoes the Authorization header back; the
                // guest logs it and returns it in an error. The host must
                // redact the secret from both.
                let response = authorized_get("/echo")?;
                let echoed = String::from_utf8_lossy(&response.body).into_owned();
                log::warn(&format!("server said: {echoed}"));
                Err(ConnectorError::Internal(format!("server said: {echoed}")))
            }
            _ => Ok(usage::page(&[record(1), record(2)], None)),
        }
    }
}

trueup_connector::export_vendor!(Hostile);
