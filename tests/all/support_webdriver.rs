//! A small W3C WebDriver client over reqwest, and a chromedriver process
//! driving Debian's headless Chromium, for the browser tests.
//!
//! Only what the tests use: sessions, navigation, finding elements,
//! clicking, typing, reading text and attributes, running a script and
//! taking screenshots. Chromedriver and Chromium come from Debian's
//! `chromium` and `chromium-driver` packages (`TRUEUP_CHROMEDRIVER` and
//! `TRUEUP_CHROMIUM` override the paths); without them the tests fail
//! with the command that installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a5e6-4f8be6e6e2a5";

/// The id of an element reference: under the W3C key, or the one key of
/// the object (some chromedriver builds use another key).
fn element_id(reference: &Value) -> Option<String> {
    if let Some(id) = reference[ELEMENT_KEY].as_str() {
        return Some(id.to_owned());
    }
    let object = reference.as_object()?;
    let mut values = object.values();
    match (values.next(), values.next()) {
        (Some(Value::String(id)), None) => Some(id.clone()),
        _ => None,
    }
}

/// How long waits poll by default.
pub const WAIT: Duration = Duration::from_secs(20);

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

/// A running chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    port: u16,
    chromium: PathBuf,
    /// Sessions opened, ended on drop (a failed test leaves no browser).
    sessions: std::sync::Mutex<Vec<String>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // End the sessions first (chromedriver closes their browsers), with
        // a blocking request: drop cannot await.
        let sessions = std::mem::take(
            &mut *self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for id in sessions {
            use std::io::{Read, Write};
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.port
                );
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
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
            port,
            chromium,
            sessions: std::sync::Mutex::new(Vec::new()),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{}/status", this.base)).send().await
                && let Ok(text) = response.text().await
                && serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v["value"]["ready"] == json!(true))
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

    /// A new headless browser session.
    pub async fn session(&self) -> Session {
        let http = reqwest::Client::new();
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": self.chromium.to_string_lossy(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-extensions",
                            "--no-first-run",
                            "--window-size=1400,1000",
                        ],
                    },
                },
            },
        });
        let answer = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/session", self.base),
            Some(capabilities),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot open a browser session: {e}; {INSTALL_HINT}"));
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {answer}"))
            .to_owned();
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.clone());
        Session {
            http,
            url: format!("{}/session/{id}", self.base),
        }
    }
}

/// Sends one WebDriver command; its `value`, or the error it reports.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{method} {url}: {e}: {text}"))?;
    if status.is_success() {
        Ok(value["value"].clone())
    } else {
        Err(format!(
            "{method} {url}: {status}: {} {}",
            value["value"]["error"], value["value"]["message"]
        ))
    }
}

/// A browser session, closed by [`Session::close`].
pub struct Session {
    http: reqwest::Client,
    url: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        call(&self.http, method, &format!("{}{path}", self.url), body).await
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The current URL.
    pub async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every element matching the CSS selector (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .try_cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .unwrap_or(Value::Null);
        found
            .as_array()
            .map(|items| items.iter().filter_map(element_id).map(Element).collect())
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` to exist and be displayed.
    pub async fn wait_for(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            for element in self.find_all(css).await {
                if self.displayed(&element).await {
                    return element;
                }
            }
            if started.elapsed() > WAIT {
                let alert = self.page_alert().await;
                panic!(
                    "no visible {css:?} within {WAIT:?} on {}{alert}",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css`'s text satisfies `ok`; returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            for element in self.find_all(css).await {
                last = self.text(&element).await;
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
        for element in self.find_all("#alert").await {
            if self.displayed(&element).await {
                return format!("; the page's alert says: {}", self.text(&element).await);
            }
        }
        String::new()
    }

    /// Whether `element` is displayed.
    pub async fn displayed(&self, element: &Element) -> bool {
        self.try_cmd(
            reqwest::Method::GET,
            &format!("/element/{}/displayed", element.0),
            None,
        )
        .await
        .is_ok_and(|v| v == json!(true))
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Empties the input `element`.
    pub async fn clear(&self, element: &Element) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// `element`'s rendered text.
    pub async fn text(&self, element: &Element) -> String {
        self.try_cmd(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            None,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// `element`'s attribute `name`.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.try_cmd(
            reqwest::Method::GET,
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page; its return value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = decode_base64(encoded.as_str().unwrap_or_default());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact directory");
        }
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.try_cmd(reqwest::Method::DELETE, "", None).await;
    }
}

/// Decodes standard base64 (padding and whitespace ignored).
fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(decode_base64("iVBORw=="), [0x89, b'P', b'N', b'G']);
}
