//! Test support: headless Chromium checks of generated HTML (the verify report).
//!
//! [`inspect`] loads a page from disk in a throwaway profile with networking features off,
//! takes a screenshot and collects the page's errors; [`is_blank`] tells whether a screenshot
//! shows anything. Chromium's stderr log prints console messages without their level, so the
//! page is loaded from an instrumented copy whose first script re-logs `console.error`, failed
//! resource loads and unhandled promise rejections under a marker; uncaught exceptions are
//! recognised by Chromium's own "Uncaught" prefix.
#![allow(dead_code)]

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Marker the instrumentation script puts before every error it re-logs.
const MARKER: &str = "QAIRT_PAGE_ERROR ";

/// First script of the instrumented copy. ES5, no output unless something goes wrong.
const HOOK: &str = r#"<script>(function () {
  var marker = "QAIRT_PAGE_ERROR ";
  var original = console.error.bind(console);
  console.error = function () {
    original(marker + "console.error: " + Array.prototype.map.call(arguments, String).join(" "));
  };
  window.addEventListener("error", function (ev) {
    var t = ev.target;
    if (t && t !== window && t.tagName) {
      original(marker + "failed to load <" + t.tagName.toLowerCase() + "> " + (t.src || t.href || ""));
    }
  }, true);
  window.addEventListener("unhandledrejection", function (ev) {
    original(marker + "unhandled promise rejection: " + String(ev.reason));
  });
})();</script>"#;

/// A hung browser is killed after this long (a safety net, not a performance bound).
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);

/// What a headless load of a page produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The PNG screenshot (1280 x 2000 viewport).
    pub screenshot: PathBuf,
    /// Uncaught exceptions, `console.error` calls, failed resource loads, unhandled promise
    /// rejections, and failures to run the browser at all.
    pub console_errors: Vec<String>,
    /// Chromium's full stderr log, for debugging.
    pub log: PathBuf,
}

/// Whether a test that needs Chromium can run: see [`crate::util::tool_or_skip`].
pub fn available() -> bool {
    crate::util::tool_or_skip(
        chromium().is_some(),
        "chromium",
        "`bash scripts/setup-browser.sh` installs Debian's package, as .ci/run does",
    )
}

/// The Chromium binary: `/usr/bin/chromium`, else `chromium` on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/chromium");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Loads `html` in headless Chromium, screenshots it into `out_dir` and collects its errors.
pub fn inspect(html: &Path, out_dir: &Path) -> Inspection {
    let stem = html.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "page".to_string());
    let screenshot = out_dir.join(format!("{stem}.png"));
    let log = out_dir.join(format!("{stem}.chromium.log"));
    let mut inspection = Inspection { screenshot: screenshot.clone(), console_errors: Vec::new(), log: log.clone() };
    let mut fail = |why: String| {
        inspection.console_errors.push(why);
    };

    let Some(browser) = chromium() else {
        fail("chromium not found (/usr/bin/chromium or on PATH)".to_string());
        return inspection;
    };
    let page = match std::fs::read_to_string(html) {
        Ok(page) => page,
        Err(e) => {
            fail(format!("cannot read {}: {e}", html.display()));
            return inspection;
        }
    };
    // The copy sits next to the original so relative references resolve the same way.
    let dir = html.parent().unwrap_or(Path::new("."));
    let instrumented = dir.join(format!(".{stem}.inspect.html"));
    if let Err(e) = std::fs::write(&instrumented, instrument(&page)) {
        fail(format!("cannot write {}: {e}", instrumented.display()));
        return inspection;
    }
    let url = match std::path::absolute(&instrumented) {
        Ok(abs) => format!("file://{}", abs.display()),
        Err(e) => {
            fail(format!("cannot resolve {}: {e}", instrumented.display()));
            return inspection;
        }
    };
    let result = run_browser(&browser, &url, &screenshot, &log);
    let _ = std::fs::remove_file(&instrumented);
    match result {
        Ok(stderr) => inspection.console_errors.extend(page_errors(&stderr)),
        Err(why) => inspection.console_errors.push(why),
    }
    if !inspection.screenshot.is_file() {
        inspection.console_errors.push(format!("no screenshot written; see {}", log.display()));
    }
    inspection
}

/// Runs Chromium once and returns its stderr log.
fn run_browser(browser: &Path, url: &str, screenshot: &Path, log: &Path) -> Result<String, String> {
    let profile = tempfile::tempdir().map_err(|e| format!("cannot create a profile dir: {e}"))?;
    let log_file = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| format!("cannot share {}: {e}", log.display()))?;
    let _ = std::fs::remove_file(screenshot);
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", browser.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > BROWSER_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("chromium did not finish within {BROWSER_DEADLINE:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for chromium: {e}")),
        }
    };
    let stderr = std::fs::read_to_string(log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    if !status.success() {
        return Err(format!("chromium exited with {status}; see {}", log.display()));
    }
    Ok(stderr)
}

/// The page with the error hook as its first script (right after `<head>`, else at the top).
fn instrument(page: &str) -> String {
    let lower = page.to_ascii_lowercase();
    let at = lower.find("<head").and_then(|start| lower[start..].find('>').map(|end| start + end + 1));
    match at {
        Some(at) => format!("{}{HOOK}{}", &page[..at], &page[at..]),
        None => format!("{HOOK}{page}"),
    }
}

/// Error messages among Chromium's logged console lines, e.g.
/// `[..:INFO:CONSOLE:1] "Uncaught ReferenceError: f is not defined", source: file:///x.html (1)`.
fn page_errors(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .filter_map(|line| {
            let message = line.split_once("] ").map(|(_, m)| m).unwrap_or(line);
            let text = message.trim_start_matches('"');
            if let Some(rest) = text.strip_prefix(MARKER) {
                Some(rest.to_string())
            } else if text.starts_with("Uncaught") {
                Some(message.to_string())
            } else {
                None
            }
        })
        .collect()
}

/// `true` when the PNG has every pixel the same colour (or cannot be decoded).
pub fn is_blank(png: &Path) -> bool {
    let Ok(file) = File::open(png) else { return true };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let Ok(mut reader) = decoder.read_info() else { return true };
    let Some(size) = reader.output_buffer_size() else { return true };
    let mut buf = vec![0u8; size];
    let Ok(info) = reader.next_frame(&mut buf) else { return true };
    let bytes_per_pixel = info.color_type.samples() * if info.bit_depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let row_bytes = info.width as usize * bytes_per_pixel;
    let Some(first) = buf.get(..bytes_per_pixel) else { return true };
    let first = first.to_vec();
    buf.chunks(info.line_size.max(1))
        .take(info.height as usize)
        .all(|row| row.get(..row_bytes).is_some_and(|pixels| pixels.chunks(bytes_per_pixel).all(|p| p == first)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qairt::verify::html::{Headline, Histogram, HistogramKind, LayerRow, ReportData, histogram, render_report};

    #[test]
    fn console_errors_of_a_broken_page_are_caught() {
        if !available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("broken.html");
        std::fs::write(
            &page,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>t</title></head><body><p>x</p>\
             <script>console.log(\"a plain log line\")</script>\
             <script>undefinedFunction()</script>\
             <script>console.error(\"explicit\", 42)</script>\
             <img src=\"missing.png\"></body></html>",
        )
        .unwrap();
        let found = inspect(&page, dir.path());
        let joined = found.console_errors.join("\n");
        assert_eq!(found.console_errors.len(), 3, "{joined}");
        assert!(joined.contains("Uncaught ReferenceError: undefinedFunction is not defined"), "{joined}");
        assert!(joined.contains("console.error: explicit 42"), "{joined}");
        assert!(joined.contains("failed to load <img>"), "{joined}");
        assert!(!joined.contains("a plain log line"), "{joined}");
    }

    #[test]
    fn a_clean_page_has_no_errors_and_is_not_blank() {
        if !available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("clean.html");
        std::fs::write(&page, "<!DOCTYPE html><html><head><title>t</title></head><body><h1>Hello</h1></body></html>")
            .unwrap();
        let found = inspect(&page, dir.path());
        assert_eq!(found.console_errors, Vec::<String>::new());
        assert!(!is_blank(&found.screenshot));
        let empty = dir.path().join("empty.html");
        std::fs::write(&empty, "<!DOCTYPE html><html><head><title>t</title></head><body></body></html>").unwrap();
        let found = inspect(&empty, dir.path());
        assert!(is_blank(&found.screenshot), "an empty page screenshots as one colour");
    }

    #[test]
    fn the_verify_report_renders_without_errors() {
        if !available() {
            return;
        }
        let values: Vec<f32> = (0..4000).map(|i| ((i as f32) * 0.173).sin() * 1.3).collect();
        let (edges, counts) = histogram(&values, 40, Some((-1.0, 1.0)));
        let data = ReportData {
            title: "report <&>".into(),
            project: "p".into(),
            target: "t".into(),
            passed: false,
            headline: vec![Headline {
                name: "SQNR (dB)".into(),
                value: 20.0,
                threshold: Some(25.0),
                passed: Some(false),
                lower_is_better: false,
            }],
            verifier_columns: vec!["SQNR".into()],
            layers: (0..30)
                .map(|i| LayerRow {
                    name: format!("layer<{i}>"),
                    layer_type: "Conv".into(),
                    sqnr_db: Some(if i == 0 { f64::INFINITY } else { 40.0 - i as f64 }),
                    values: vec![Some(40.0 - i as f64)],
                    failed: i >= 16,
                    ..LayerRow::default()
                })
                .collect(),
            first_failing: Some(16),
            sqnr_threshold: Some(25.0),
            histograms: vec![Histogram {
                tensor: "w".into(),
                layer: Some("conv (Conv) → y".into()),
                kind: HistogramKind::Weight,
                edges,
                counts,
                encoding: Some((-1.0, 1.0)),
                channel_ranges: vec![(-1.0, 1.0), (-0.5, 0.5)],
            }],
            ..ReportData::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("report.html");
        std::fs::write(&page, render_report(&data)).unwrap();
        let found = inspect(&page, dir.path());
        assert_eq!(found.console_errors, Vec::<String>::new());
        assert!(!is_blank(&found.screenshot));

        // The "failing rows only" box, ticked in Chromium, leaves the 14 failing rows of 30 (and
        // unticked, all 30): a console error otherwise, which the inspection reports.
        let probe = r##"<script>
(function () {
  var box = document.querySelector('input[data-failed-only="layers-table"]');
  function shown() {
    var n = 0;
    document.querySelectorAll("#layers-table tbody tr").forEach(function (r) {
      if (getComputedStyle(r).display !== "none") { n++; }
    });
    return n;
  }
  box.click();
  if (shown() !== 14) { console.error("failed-only filter shows " + shown() + " rows, expected 14"); }
  box.click();
  if (shown() !== 30) { console.error("unfiltered table shows " + shown() + " rows, expected 30"); }
})();
</script>
</body>"##;
        let html = render_report(&data);
        assert_eq!(html.matches("</body>").count(), 1);
        let filtered = dir.path().join("filter.html");
        std::fs::write(&filtered, html.replacen("</body>", probe, 1)).unwrap();
        let found = inspect(&filtered, dir.path());
        assert_eq!(found.console_errors, Vec::<String>::new());
    }
}
