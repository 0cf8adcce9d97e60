//! `promtool check metrics` on a Prometheus text exposition, for the services that add their
//! own series to `/metrics` (rules, shadows).

use std::io::Write as _;

/// Asserts that `promtool check metrics` (Debian's prometheus package, installed by CI) accepts
/// `text`: it parses, and any advice it prints is lint (naming), not an error. Skipped, saying
/// so, where promtool is not installed.
pub fn promtool_accepts(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("SKIP: promtool not installed");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint advice (naming) is not a format error; an error is.
    assert!(
        out.status.success() || !said.to_lowercase().contains("error"),
        "promtool check metrics: {said}"
    );
}
