//! The web server's security: every route but the public ones needs
//! authentication (the route list comes from the router's own table),
//! CSRF on state changes made with a session, roles, API tokens, login
//! lockout, secrets never returned, security headers, and the OpenAPI
//! document listing exactly the router's routes. Also the shared helpers
//! of the web tests (a served app, an HTTP client with a session or
//! token).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::Method;
use trueup::app::App;
use trueup::auth::{Role, hash_password, new_api_token};
use trueup::config::{Config, PluginEntry, RulesConfig, StoreConfig};
use trueup::server::Workers;
use trueup::web::{self, Access};
use trueup_plugin_host::Grants;

use crate::support::{plugin_dir, repo_root};

/// A served application.
pub struct Served {
    /// The application.
    pub app: App,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: Option<tempfile::TempDir>,
}

/// Serves `app` on a free loopback port with the chosen workers, in the
/// current runtime.
pub async fn serve(app: App, workers: Workers, dir: Option<tempfile::TempDir>) -> Served {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let served = app.clone();
    tokio::spawn(async move {
        trueup::server::serve_web(served, listener, workers, std::future::pending())
            .await
            .expect("serve");
    });
    Served {
        app,
        base,
        _dir: dir,
    }
}

/// No workers: the web server alone.
pub const NO_WORKERS: Workers = Workers {
    jobs: false,
    scheduler: false,
    write_back: false,
};

/// An app with no PSA or vendors, the Pax8 plugin installed (for its
/// secret) and the shipped rules, on SQLite in a temporary directory.
pub async fn bare_app() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plugins = BTreeMap::new();
    plugins.insert(
        "trueup.pax8".to_owned(),
        PluginEntry {
            path: plugin_dir("trueup.pax8"),
            enabled: true,
            config: BTreeMap::from([("client_id".to_owned(), "demo-client".to_owned())]),
            grants: Grants {
                http: vec!["https://api.pax8.com".to_owned()],
                private_networks: Vec::new(),
                secrets: vec!["client_secret".to_owned()],
            },
            limits: Default::default(),
        },
    );
    let config = Config {
        data_dir: dir.path().to_owned(),
        store: StoreConfig {
            url: Some(format!(
                "sqlite://{}",
                dir.path().join("trueup.db").display()
            )),
        },
        plugins,
        rules: RulesConfig {
            path: repo_root().join("rules/default.rhai"),
        },
        ..Config::default()
    };
    let app = App::open(Arc::new(config)).await.expect("app opens");
    (app, dir)
}

/// Creates a user with `role` and a fixed password; returns the password.
pub async fn add_user(app: &App, name: &str, role: Role) -> String {
    let password = format!("{name}-password-123");
    let hash = hash_password(&password).expect("hash");
    app.store()
        .create_user(name, &hash, web::auth::stored_role(role), app.now())
        .await
        .expect("user");
    password
}

/// Creates an API token with `role`; returns its value.
pub async fn add_token(app: &App, name: &str, role: Role) -> String {
    let value = new_api_token();
    app.store()
        .create_api_token(
            name,
            &value,
            web::auth::stored_role(role),
            "test",
            app.now(),
        )
        .await
        .expect("token");
    value
}

/// An HTTP client with a session cookie and CSRF token, or a token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The server.
    pub base: String,
    /// `trueup_session=...`.
    pub cookie: Option<String>,
    /// The session's CSRF token.
    pub csrf: Option<String>,
    /// An API token.
    pub token: Option<String>,
}

/// A response, read.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl Client {
    /// No credentials.
    pub fn anonymous(base: &str) -> Self {
        Self {
            http: no_redirects(),
            base: base.to_owned(),
            cookie: None,
            csrf: None,
            token: None,
        }
    }

    /// With an API token.
    pub fn with_token(base: &str, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::anonymous(base)
        }
    }

    /// Logs in; panics unless it succeeds.
    pub async fn login(base: &str, username: &str, password: &str) -> Self {
        let mut client = Self::anonymous(base);
        let answer = client
            .send(
                Method::POST,
                "/api/v1/session",
                Some(serde_json::json!({ "username": username, "password": password })),
            )
            .await;
        assert_eq!(answer.status, 200, "login: {}", answer.text);
        let cookie = answer.headers["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        client.cookie = Some(cookie);
        client.csrf = answer.json()["csrf_token"].as_str().map(str::to_owned);
        client
    }

    /// Sends a request (with the CSRF token when there is one).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut headers = BTreeMap::new();
        if let Some(csrf) = &self.csrf {
            headers.insert("x-csrf-token".to_owned(), csrf.clone());
        }
        self.send_with(method, path, body, headers).await
    }

    /// Sends a request with exactly these extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: BTreeMap<String, String>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Answer {
            status,
            headers,
            text,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }
}

/// A concrete path for a route pattern (dummy values for parameters).
pub fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{key}" => "0123456789abcdef0123456789abcdef".to_owned(),
            "{id}" => "1".to_owned(),
            "{*page}" => "cards".to_owned(),
            "{file}" => "app.css".to_owned(),
            s if s.starts_with('{') => "x".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_public_ones_needs_authentication() {
    let (app, dir) = bare_app().await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let table = web::route_table();
    assert!(table.len() > 50, "the whole API is in the table");
    let public: BTreeSet<(String, &str)> = table
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| (r.method.to_string(), r.path.as_str()))
        .collect();
    let expected: BTreeSet<(String, &str)> = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/"),
        ("GET", "/login"),
        ("GET", "/assets/{file}"),
        ("POST", "/api/v1/session"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p))
    .collect();
    assert_eq!(
        public, expected,
        "exactly health, login and its assets are public"
    );
    let anonymous = Client::anonymous(&server.base);
    let stale = Client {
        cookie: Some("trueup_session=forged-or-expired".into()),
        csrf: Some("whatever".into()),
        ..Client::anonymous(&server.base)
    };
    let bad_token = Client::with_token(&server.base, "tu_not-a-real-token");
    for route in &table {
        let path = concrete(&route.path);
        let body = (route.method != Method::GET).then(|| serde_json::json!({}));
        for client in [&anonymous, &stale, &bad_token] {
            let answer = client.send(route.method.clone(), &path, body.clone()).await;
            match route.access {
                Access::Public => assert_ne!(
                    answer.status, 401,
                    "{} {path} is public: {}",
                    route.method, answer.text
                ),
                Access::Page => {
                    assert_eq!(answer.status, 303, "{} {path}", route.method);
                    assert_eq!(answer.headers["location"], "/login");
                }
                Access::Role(_) => {
                    assert_eq!(
                        answer.status, 401,
                        "{} {path}: {}",
                        route.method, answer.text
                    );
                    assert_eq!(answer.code(), "unauthenticated");
                }
                // Push-key routes are the push API's, not in this table.
                Access::PushKey => panic!("{} {path} is a push API route", route.method),
            }
        }
    }
    // Unknown routes are a JSON 404.
    let answer = anonymous.get("/api/v1/nothing-here").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.code(), "not_found");
    // `/` sends a visitor to the login page.
    let answer = anonymous.get("/").await;
    assert_eq!(
        (
            answer.status,
            answer.headers["location"].to_str().expect("location")
        ),
        (303, "/login")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_with_a_session_need_the_csrf_token() {
    let (app, dir) = bare_app().await;
    let password = add_user(&app, "ann", Role::Approver).await;
    let token = add_token(&app, "automation", Role::Approver).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let session = Client::login(&server.base, "ann", &password).await;
    let body =
        serde_json::json!({ "cards": ["0123456789abcdef0123456789abcdef"], "tag": "review" });
    let no_token = Client {
        csrf: None,
        ..session.clone()
    };
    let answer = no_token.post("/api/v1/tags", body.clone()).await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (403, "csrf"),
        "{}",
        answer.text
    );
    let wrong = Client {
        csrf: Some("not-the-token".into()),
        ..session.clone()
    };
    let answer = wrong.post("/api/v1/tags", body.clone()).await;
    assert_eq!((answer.status, answer.code().as_str()), (403, "csrf"));
    // The right token gets through; so does an API token without one.
    let answer = session.post("/api/v1/tags", body.clone()).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let automation = Client::with_token(&server.base, &token);
    let answer = automation.post("/api/v1/tags/remove", body).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    // Reads need no CSRF token.
    assert_eq!(no_token.get("/api/v1/tags").await.status, 200);
    // The session says who is logged in and gives the token again.
    let me = session.get("/api/v1/session").await.json();
    assert_eq!(me["username"], "ann");
    assert_eq!(me["role"], "approver");
    assert_eq!(me["csrf_token"].as_str(), session.csrf.as_deref());
    // Logging out needs the token too, and ends the session.
    assert_eq!(
        no_token
            .send(Method::DELETE, "/api/v1/session", None)
            .await
            .status,
        403
    );
    let answer = session.send(Method::DELETE, "/api/v1/session", None).await;
    assert_eq!(answer.status, 204);
    assert!(
        answer.headers["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    assert_eq!(session.get("/api/v1/session").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_each_caller_may_do() {
    let (app, dir) = bare_app().await;
    let viewer_password = add_user(&app, "vic", Role::Viewer).await;
    let approver_password = add_user(&app, "amy", Role::Approver).await;
    let admin_password = add_user(&app, "ada", Role::Admin).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let viewer = Client::login(&server.base, "vic", &viewer_password).await;
    let approver = Client::login(&server.base, "amy", &approver_password).await;
    let admin = Client::login(&server.base, "ada", &admin_password).await;
    let decision = serde_json::json!({
        "cards": ["0123456789abcdef0123456789abcdef"],
        "action": { "action": "dismiss" }
    });
    // Viewers read but do not decide.
    assert_eq!(viewer.get("/api/v1/cards").await.status, 200);
    let answer = viewer.post("/api/v1/decisions", decision.clone()).await;
    assert_eq!((answer.status, answer.code().as_str()), (403, "forbidden"));
    // Approvers decide (no reconcile has run: 404, past the guard) but do
    // not manage integrations.
    let answer = approver.post("/api/v1/decisions", decision).await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert_eq!(approver.get("/api/v1/integrations").await.status, 403);
    let secret = serde_json::json!({ "value": "s3cr3t-value" });
    let answer = approver
        .send(
            Method::PUT,
            "/api/v1/integrations/trueup.pax8/secrets/client_secret",
            Some(secret.clone()),
        )
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(approver.get("/api/v1/users").await.status, 403);
    // Admins do.
    assert_eq!(admin.get("/api/v1/integrations").await.status, 200);
    let answer = admin
        .send(
            Method::PUT,
            "/api/v1/integrations/trueup.pax8/secrets/client_secret",
            Some(secret),
        )
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let answer = admin
        .post(
            "/api/v1/users",
            serde_json::json!({ "username": "new", "role": "viewer" }),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let generated = answer.json()["password"]
        .as_str()
        .expect("generated")
        .to_owned();
    Client::login(&server.base, "new", &generated).await;
    // Demoting a user takes effect at once.
    let answer = admin
        .send(
            Method::PATCH,
            "/api/v1/users/amy",
            Some(serde_json::json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let amy = Client::login(&server.base, "amy", &approver_password).await;
    assert_eq!(
        amy.post(
            "/api/v1/tags",
            serde_json::json!({ "cards": ["0123456789abcdef0123456789abcdef"], "tag": "x" })
        )
        .await
        .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_authenticate_until_revoked() {
    let (app, dir) = bare_app().await;
    let admin_password = add_user(&app, "ada", Role::Admin).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let admin = Client::login(&server.base, "ada", &admin_password).await;
    let answer = admin
        .post(
            "/api/v1/tokens",
            serde_json::json!({ "name": "export", "role": "viewer" }),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let created = answer.json();
    let value = created["value"].as_str().expect("value").to_owned();
    assert!(value.starts_with("tu_"));
    let id = created["token"]["id"].as_i64().expect("id");
    let export = Client::with_token(&server.base, &value);
    assert_eq!(export.get("/api/v1/cards").await.status, 200);
    assert_eq!(export.get("/metrics").await.status, 200);
    let me = export.get("/api/v1/session").await.json();
    assert_eq!(me["username"], "token:export");
    assert!(me.get("csrf_token").is_none());
    // Listing tokens never shows a value.
    let listed = admin.get("/api/v1/tokens").await;
    assert!(!listed.text.contains(&value));
    let answer = admin
        .send(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(export.get("/api/v1/cards").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_lock_the_username_out() {
    let (app, dir) = bare_app().await;
    let password = add_user(&app, "ann", Role::Viewer).await;
    let other = add_user(&app, "bob", Role::Viewer).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let anonymous = Client::anonymous(&server.base);
    let attempt = |username: &str, password: &str| {
        let anonymous = anonymous.clone();
        let body = serde_json::json!({ "username": username, "password": password });
        async move { anonymous.post("/api/v1/session", body).await }
    };
    for _ in 0..web::auth::MAX_LOGIN_FAILURES {
        let answer = attempt("ann", "wrong password!").await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    // Locked: even the right password is refused, with Retry-After.
    let answer = attempt("ann", &password).await;
    assert_eq!(answer.status, 429, "{}", answer.text);
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= web::auth::LOGIN_WINDOW.as_secs());
    // Other users are not affected; unknown users fail like wrong passwords.
    assert_eq!(attempt("bob", &other).await.status, 200);
    assert_eq!(attempt("nobody", "whatever-password").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_returned() {
    let (app, dir) = bare_app().await;
    let admin_password = add_user(&app, "ada", Role::Admin).await;
    let server = serve(app.clone(), NO_WORKERS, Some(dir)).await;
    let admin = Client::login(&server.base, "ada", &admin_password).await;
    let secret = "pax8-secret-7f3c9a1e2b4d";
    let answer = admin
        .send(
            Method::PUT,
            "/api/v1/integrations/trueup.pax8/secrets/client_secret",
            Some(serde_json::json!({ "value": secret })),
        )
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    // An undeclared secret is refused, naming the declared ones.
    let answer = admin
        .send(
            Method::PUT,
            "/api/v1/integrations/trueup.pax8/secrets/password",
            Some(serde_json::json!({ "value": secret })),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.text.contains("client_secret"), "{}", answer.text);
    assert!(!answer.text.contains(secret));
    // The integration shows the secret as set, never its value.
    let integration = admin.get("/api/v1/integrations/trueup.pax8").await;
    assert_eq!(integration.status, 200);
    let secrets = &integration.json()["secrets"];
    assert_eq!(secrets[0]["name"], "client_secret");
    assert_eq!(secrets[0]["set"], true);
    assert_eq!(secrets[0]["updated_by"], "ada");
    // No GET route returns it (the live event stream never ends, so it is
    // left out; it carries no secrets by construction).
    for route in web::route_table() {
        if route.method != Method::GET || route.path == "/api/v1/events" {
            continue;
        }
        let path = concrete(&route.path).replace("/x", "/trueup.pax8");
        let answer = admin.get(&path).await;
        assert!(
            !answer.text.contains(secret),
            "GET {path} returned the secret"
        );
    }
    // The store holds it sealed.
    let stored = app
        .store()
        .secret("trueup.pax8", "client_secret")
        .await
        .expect("read")
        .expect("stored");
    assert!(
        !String::from_utf8_lossy(&stored.ciphertext).contains(secret),
        "the ciphertext is not the value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_no_inline_script() {
    let (app, dir) = bare_app().await;
    let password = add_user(&app, "vic", Role::Viewer).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let anonymous = Client::anonymous(&server.base);
    let login = anonymous.get("/login").await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert_eq!(login.headers["referrer-policy"], "no-referrer");
    let viewer = Client::login(&server.base, "vic", &password).await;
    let page = viewer.get("/app/cards").await;
    assert_eq!(page.status, 200);
    for html in [&login.text, &page.text] {
        // Scripts only by src, from this origin; no inline handlers; no CDN.
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(
                open.contains("src=\"/assets/"),
                "inline or remote script: <script{open}>"
            );
        }
        assert!(!html.contains(" onclick="), "inline handler");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "remote asset"
        );
    }
    let css = anonymous.get("/assets/app.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/css")
    );
    assert_eq!(anonymous.get("/assets/nothing.js").await.status, 404);
    assert_eq!(anonymous.get("/healthz").await.json()["status"], "ok");
    assert_eq!(anonymous.get("/readyz").await.json()["status"], "ready");
    let metrics = viewer.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("trueup_http_requests_total{method=\"GET\",route=\"/login\",status=\"200\"}"),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes() {
    let (app, dir) = bare_app().await;
    let token = add_token(&app, "docs", Role::Viewer).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let doc = Client::with_token(&server.base, &token)
        .get("/api/openapi.json")
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = web::route_table()
        .iter()
        .map(|r| (r.method.to_string(), r.path.replace("{*page}", "{page}")))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // Each operation names the access the router enforces.
    for route in web::route_table() {
        let op = &doc["paths"][route.path.replace("{*page}", "{page}")]
            [route.method.as_str().to_lowercase()];
        assert_eq!(
            op["x-trueup-access"],
            web::openapi::access_name(route.access),
            "{} {}",
            route.method,
            route.path
        );
    }
}

/// `trueup openapi --no-push` prints the document a server without the push
/// API serves (the same JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trueup_openapi_prints_the_served_document() {
    let (app, dir) = bare_app().await;
    let token = add_token(&app, "docs", Role::Viewer).await;
    let server = serve(app, NO_WORKERS, Some(dir)).await;
    let served = Client::with_token(&server.base, &token)
        .get("/api/openapi.json")
        .await
        .json();
    let output = std::process::Command::new(crate::support::trueup_binary())
        .args(["openapi", "--no-push"])
        .output()
        .expect("run trueup openapi");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("trueup openapi prints JSON");
    assert_eq!(printed, served);
    let with_push = std::process::Command::new(crate::support::trueup_binary())
        .arg("openapi")
        .output()
        .expect("run trueup openapi");
    let with_push: serde_json::Value =
        serde_json::from_slice(&with_push.stdout).expect("trueup openapi prints JSON");
    assert!(with_push["paths"]["/api/v1/usage"]["post"].is_object());
}
