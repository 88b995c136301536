//! Headless Chromium for the browser tests: a chromedriver process on a
//! free loopback port, and browser sessions over [`fantoccini`] with the
//! waits and screenshots the tests need.
//!
//! Chromedriver and Chromium come from Debian's `chromium` and
//! `chromium-driver` packages (`TRUEUP_CHROMEDRIVER` and `TRUEUP_CHROMIUM`
//! override the paths); without them the tests fail with the command that
//! installs them. Every session the [`Driver`] opened is ended when it is
//! dropped, so a failed test leaves no Chromium running.

use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long waits poll by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// How long ending one leftover session may take when the driver is
/// dropped (a hung chromedriver must not hang the test binary).
const END_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Chromium's flags: headless in a container (no sandbox, no GPU), and no
/// network of its own (updates, sync, QUIC), which stalls or spams logs in
/// a sandbox without internet.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
];

const INSTALL_HINT: &str = "install Debian's Chromium and its driver: \
     `sudo apt-get install -y chromium chromium-driver` (.ci/run does this), \
     or point TRUEUP_CHROMEDRIVER / TRUEUP_CHROMIUM at them";

fn find_program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in candidates {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let extra: &[&str] = if candidates.contains(&"chromedriver") {
        &["/usr/lib/chromium/chromedriver"]
    } else {
        &["/usr/lib/chromium/chromium"]
    };
    extra.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A session the driver opened: its id, and the browser profile it uses
/// (removed once the browser is gone).
struct Opened {
    id: String,
    _profile: TempDir,
}

/// A running chromedriver, killed on drop after ending its sessions.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    chromium: PathBuf,
    /// Sessions opened, ended on drop (a failed test leaves no browser).
    sessions: Mutex<Vec<Opened>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let sessions =
            std::mem::take(&mut *self.sessions.lock().unwrap_or_else(PoisonError::into_inner));
        // End the sessions first (chromedriver closes their browsers;
        // killing chromedriver alone would leave them running). A test that
        // panicked drops this inside its runtime, and fantoccini's own
        // end-of-session request runs on that runtime, which is going away:
        // so end them again from a thread with a runtime of its own.
        // Ending one already ended is an error, and harmless.
        if !sessions.is_empty() {
            let base = self.base.clone();
            let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
            let ended = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    for id in ids {
                        let end = async {
                            if let Ok(client) =
                                Client::with_existing_session(&base, &id, HttpConnector::new())
                                    .await
                            {
                                let _ = client.close().await;
                            }
                        };
                        let _ = tokio::time::timeout(END_SESSION_TIMEOUT, end).await;
                    }
                });
            });
            let _ = ended.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The profiles go last: Chromium may write to them until it exits.
        drop(sessions);
    }
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it is ready.
    ///
    /// # Panics
    /// Chromedriver or Chromium is missing (with how to install them), or
    /// chromedriver does not become ready.
    pub async fn start() -> Self {
        let Some(driver) = find_program("TRUEUP_CHROMEDRIVER", &["chromedriver"]) else {
            panic!("chromedriver is missing: {INSTALL_HINT}");
        };
        let Some(chromium) = find_program(
            "TRUEUP_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ) else {
            panic!("Chromium is missing: {INSTALL_HINT}");
        };
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", driver.display()));
        let this = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            chromium,
            sessions: Mutex::new(Vec::new()),
        };
        // Chromedriver's readiness is its `/status` (no session needed, so
        // asked without the WebDriver client).
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{}/status", this.base)).send().await
                && let Ok(text) = response.text().await
                && serde_json::from_str::<Value>(&text)
                    .is_ok_and(|status| status["value"]["ready"] == json!(true))
            {
                return this;
            }
            assert!(
                started.elapsed() < WAIT,
                "chromedriver ({}) did not become ready on port {port}",
                driver.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser session with an empty profile of its own.
    ///
    /// # Panics
    /// Chromium does not start.
    pub async fn session(&self) -> Session {
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": self.chromium.to_string_lossy(), "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.base)
            .await
            .unwrap_or_else(|e| panic!("cannot open a browser session: {e}; {INSTALL_HINT}"));
        let id = client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("a new session has an id");
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Opened {
                id,
                _profile: profile,
            });
        Session { client }
    }
}

/// A browser session: fantoccini's [`Client`] (its commands are called
/// on the session directly), plus waits that poll the page and screenshots
/// saved to files.
pub struct Session {
    client: Client,
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Session {
    /// Every element matching the CSS selector (maybe none; an error, such
    /// as a page being replaced, counts as none).
    pub async fn select_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` to exist and be displayed.
    ///
    /// # Panics
    /// None shows within [`WAIT`] (with the page's alert, if any).
    pub async fn wait_for(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            for element in self.select_all(css).await {
                if element.is_displayed().await.unwrap_or(false) {
                    return element;
                }
            }
            if started.elapsed() > WAIT {
                let alert = self.page_alert().await;
                let url = self.current_url().await.map(String::from);
                panic!("no visible {css:?} within {WAIT:?} on {url:?}{alert}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css`'s text satisfies `ok`; returns the text.
    ///
    /// # Panics
    /// It does not within [`WAIT`] (with the last text and the page's
    /// alert, if any).
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            for element in self.select_all(css).await {
                last = element.text().await.unwrap_or_default();
                if ok(&last) {
                    return last;
                }
            }
            if started.elapsed() > WAIT {
                let alert = self.page_alert().await;
                panic!("{css:?} never showed {what} within {WAIT:?} (last text {last:?}){alert}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// The UI's visible error alert, for failure messages.
    async fn page_alert(&self) -> String {
        for element in self.select_all("#alert").await {
            if element.is_displayed().await.unwrap_or(false) {
                let text = element.text().await.unwrap_or_default();
                return format!("; the page's alert says: {text}");
            }
        }
        String::new()
    }

    /// Saves a PNG screenshot of the window to `path`.
    ///
    /// # Panics
    /// The browser or the file system fails.
    pub async fn screenshot_to(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
