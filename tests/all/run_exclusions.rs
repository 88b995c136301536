//! `GET /api/v1/runs/{run}/exclusions`: what a reconcile left out, with
//! the company concerned, so "why is Contoso missing?" has an answer: by
//! reason, counted per reason, paged; unknown reasons and runs are named.

use trueup::auth::Role;

use crate::reconcile_as_of::seeded_app;
use crate::web_auth::{Client, NO_WORKERS, add_token, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_exclusions_answer_why_a_customer_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = seeded_app(dir.path()).await;
    // 25 November: Contoso's contract ended on 31 October.
    let summary = app.reconcile().await.expect("reconcile");
    let token = add_token(&app, "viewer", Role::Viewer).await;
    let server = serve(app.clone(), NO_WORKERS, Some(dir)).await;
    let viewer = Client::with_token(&server.base, &token);
    let run = summary.run;

    let all = viewer.get(&format!("/api/v1/runs/{run}/exclusions")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    let all = all.json();
    let counts: Vec<(String, u64)> = all["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| {
            (
                c["code"].as_str().expect("code").to_owned(),
                c["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("account_excluded".to_owned(), 1),
            ("contract_ended".to_owned(), 1),
            ("contract_not_eligible".to_owned(), 1),
        ]
    );
    assert_eq!(all["total"], 3);
    assert_eq!(all["next"], serde_json::Value::Null);

    // Why is Contoso missing? Its contract and its line, named.
    let contoso: Vec<&serde_json::Value> = all["exclusions"]
        .as_array()
        .expect("exclusions")
        .iter()
        .filter(|e| e["company"]["name"] == "Contoso")
        .collect();
    assert_eq!(contoso.len(), 2, "{all}");
    let ended = contoso
        .iter()
        .find(|e| e["code"] == "contract_ended")
        .expect("the ended contract");
    assert_eq!(
        ended["subject"],
        serde_json::json!({ "kind": "contract", "id": "K2" })
    );
    assert_eq!(ended["name"], "Contoso 2026");
    assert_eq!(ended["severity"], "excluded");
    assert_eq!(ended["source"], "none", "no PSA plugin is configured");
    assert!(
        ended["reason"]
            .as_str()
            .expect("reason")
            .contains("ended on 2026-10-31"),
        "{ended}"
    );
    let line = contoso
        .iter()
        .find(|e| e["code"] == "contract_not_eligible")
        .expect("its line");
    assert_eq!(
        line["subject"],
        serde_json::json!({ "kind": "line", "id": "L2" })
    );

    // The excluded account: by reason, with its vendor as source.
    let accounts = viewer
        .get(&format!(
            "/api/v1/runs/{run}/exclusions?reason=account_excluded"
        ))
        .await
        .json();
    assert_eq!(accounts["total"], 1);
    assert_eq!(accounts["counts"].as_array().expect("counts").len(), 3);
    let account = &accounts["exclusions"][0];
    assert_eq!(account["name"], "Test tenant");
    assert_eq!(account["source"], "microsoft-365");
    assert_eq!(
        account["subject"],
        serde_json::json!({ "kind": "account", "id": { "vendor": "microsoft-365", "account": "T3" } })
    );

    // Pages walk all of them once.
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/runs/{run}/exclusions?limit=2");
    loop {
        let page = viewer.get(&path).await.json();
        for e in page["exclusions"].as_array().expect("exclusions") {
            seen.push(e["position"].as_i64().expect("position"));
        }
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/runs/{run}/exclusions?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, [0, 1, 2]);

    // Mistakes are named.
    let bad = viewer
        .get(&format!("/api/v1/runs/{run}/exclusions?reason=gone"))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(
        bad.text.contains("contract_ended"),
        "lists the reasons: {}",
        bad.text
    );
    let missing = viewer
        .get(&format!("/api/v1/runs/{}/exclusions", run + 1000))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);

    // The page that lists them is served.
    let page = viewer.get(&format!("/app/runs/{run}/exclusions")).await;
    assert_eq!(page.status, 200);
}
