//! Capabilities: declared in plugin.toml AND granted in trueup.toml.

use trueup_core::model::VendorId;
use trueup_plugin_host::{CallErrorKind, LoadedPlugin};

use crate::support::{
    engine, fixture_server, hostile, hostile_settings, options_with_token, plugin_dir,
};

async fn denial(behaviour: &str) -> String {
    let engine = engine();
    let base = fixture_server().await;
    let plugin = hostile(&engine, behaviour, &base);
    let mut session = plugin
        .vendor_session(VendorId::from("hostile"), options_with_token())
        .expect("vendor session");
    let error = session
        .list_usage(None, None)
        .await
        .expect_err("must be denied");
    match error.kind {
        CallErrorKind::CapabilityDenied { message } => message,
        other => panic!("expected CapabilityDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn request_to_an_undeclared_host_is_denied_with_the_fix() {
    let message = denial("undeclared-host").await;
    assert_eq!(
        message,
        "plugin test.hostile may not reach https://undeclared.example.org: it is not declared. Add \"https://undeclared.example.org\" to `capabilities.http` in the plugin's plugin.toml and grant it under [plugins.\"test.hostile\".grants] http in trueup.toml"
    );
}

#[tokio::test]
async fn request_to_a_declared_but_ungranted_host_is_denied() {
    let message = denial("ungranted-host").await;
    assert_eq!(
        message,
        "plugin test.hostile may not reach https://declared-only.example.com: the plugin declares it but it is not granted. Add \"https://declared-only.example.com\" to [plugins.\"test.hostile\".grants] http in trueup.toml"
    );
}

#[tokio::test]
async fn another_plugins_secret_is_out_of_reach() {
    let message = denial("other-secret").await;
    assert_eq!(
        message,
        "plugin test.hostile asked for the secret \"api_key\", which its plugin.toml does not declare in `capabilities.secrets`"
    );
}

#[tokio::test]
async fn loopback_is_refused_unless_its_network_is_granted() {
    let engine = engine();
    let base = fixture_server().await;
    let mut settings = hostile_settings("well-behaved", &base);
    settings.grants.private_networks.clear();
    let plugin = LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings).expect("load");
    let mut session = plugin
        .vendor_session(VendorId::from("hostile"), options_with_token())
        .expect("session");
    let error = session
        .list_accounts(None)
        .await
        .expect_err("loopback refused");
    match error.kind {
        CallErrorKind::CapabilityDenied { message } => {
            assert!(
                message.contains("resolves to 127.0.0.1, a private or loopback address"),
                "{message}"
            );
            assert!(
                message.contains("private_networks = [\"127.0.0.1/32\"]"),
                "{message}"
            );
        }
        other => panic!("expected CapabilityDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_declared_secret_that_is_not_granted_is_refused() {
    let engine = engine();
    let base = fixture_server().await;
    let mut settings = hostile_settings("well-behaved", &base);
    settings.grants.secrets.clear();
    let plugin = LoadedPlugin::load(&engine, &plugin_dir("test.hostile"), &settings).expect("load");
    let mut session = plugin
        .vendor_session(VendorId::from("hostile"), options_with_token())
        .expect("session");
    let error = session
        .list_accounts(None)
        .await
        .expect_err("secret not granted");
    assert_eq!(
        error.kind,
        CallErrorKind::CapabilityDenied {
            message: "plugin test.hostile asked for the secret \"token\", which is declared but not granted. Add \"token\" to [plugins.\"test.hostile\".grants] secrets in trueup.toml".into()
        }
    );
}

#[tokio::test]
async fn the_granted_secret_is_placed_into_the_request_by_the_host() {
    let engine = engine();
    let base = fixture_server().await;
    let plugin = hostile(&engine, "well-behaved", &base);
    let mut session = plugin
        .vendor_session(VendorId::from("hostile"), options_with_token())
        .expect("session");
    // The fixture answers 401 unless the Authorization header holds the token.
    let accounts = session.list_accounts(None).await.expect("authorized");
    let names: Vec<_> = accounts.items.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["Northwind", "Contoso"]);
}
