//! A real headless Chromium (Debian's `chromium`), driven over the Chrome
//! DevTools Protocol: open a page at a window size, read the DOM, take a
//! screenshot. Enough for the checkout page's end-to-end test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Mutex<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    next_id: AtomicU64,
}

/// One tab, at its own window size.
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

impl Browser {
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_binary())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; install Debian's chromium (scripts/test.sh does) or set CHROMIUM",
                    chromium_binary().display()
                )
            });
        let stderr = child.stderr.take().unwrap();
        let url = tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.ok()?;
                if let Some(at) = line.find("ws://") {
                    return Some(line[at..].trim().to_string());
                }
            }
            None
        })
        .await
        .unwrap()
        .expect("chromium printed no DevTools address");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        Browser {
            child,
            _profile: profile,
            socket: Mutex::new(socket),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends one command (to a tab's session when given) and returns its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut socket = self.socket.lock().await;
        socket.send(Message::Text(message.to_string().into())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the DevTools socket closed")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// A new tab of `width`×`height` CSS pixels (`mobile`: a phone's
    /// viewport and touch), showing `url` once it has loaded. Content
    /// Security Policy violations are recorded in `window.cspViolations`.
    pub async fn open(&self, url: &str, width: u32, height: u32, mobile: bool) -> Page<'_> {
        self.open_with(url, width, height, mobile, true).await
    }

    /// `open`, with JavaScript off when `scripts` is false (the page as a
    /// browser without JavaScript shows it).
    pub async fn open_with(&self, url: &str, width: u32, height: u32, mobile: bool, scripts: bool) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let page = Page {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_string(),
        };
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": if mobile { 2 } else { 1 }, "mobile": mobile}),
        )
        .await;
        page.call("Page.enable", json!({})).await;
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.cspViolations = []; document.addEventListener('securitypolicyviolation', function (e) { window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI); });"}),
        )
        .await;
        if !scripts {
            page.call("Emulation.setScriptExecutionDisabled", json!({"value": true}))
                .await;
        }
        page.call("Page.navigate", json!({"url": url})).await;
        page.wait_for("the page to load", "document.readyState === 'complete'")
            .await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page<'_> {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(result["exceptionDetails"].is_null(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// The text of the first element matching `selector`, if any.
    pub async fn text(&self, selector: &str) -> Option<String> {
        let quoted = serde_json::to_string(selector).unwrap();
        self.eval(&format!("(document.querySelector({quoted}) || {{}}).textContent"))
            .await
            .as_str()
            .map(str::to_string)
    }

    /// Waits (30 s at most) until `expression` is true in the page.
    pub async fn wait_for(&self, what: &str, expression: &str) {
        for _ in 0..300 {
            if self.eval(expression).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what} ({expression})");
    }

    /// A PNG of the element matching `selector`, as it is drawn.
    pub async fn element_png(&self, selector: &str) -> Vec<u8> {
        use base64::Engine;
        let quoted = serde_json::to_string(selector).unwrap();
        let rect = self
            .eval(&format!(
                "(function () {{ var r = document.querySelector({quoted}).getBoundingClientRect(); return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()"
            ))
            .await;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "clip": {"x": rect["x"], "y": rect["y"], "width": rect["width"], "height": rect["height"], "scale": 1}}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// Reads the QR code in a PNG (a screenshot) with a real QR decoder.
pub fn decode_qr_png(png_bytes: &[u8]) -> Option<String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().ok()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).ok()?;
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        // The first channel is enough: the code is black on white.
        pixels[y * info.line_size + x * channels]
    });
    let grids = image.detect_grids();
    let (_, content) = grids.first()?.decode().ok()?;
    Some(content)
}
