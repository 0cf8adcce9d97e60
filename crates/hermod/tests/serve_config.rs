//! `hermod serve -c FILE` with a broken configuration: the process exits 1 and the error names
//! the configuration file and the key whose file could not be used; the "anonymous clients are
//! allowed" warning only appears once the broker has started (issue 9).

use std::process::Command;
use std::time::{Duration, Instant};

const HERMOD: &str = env!("CARGO_BIN_EXE_hermod");

fn serve(dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("h.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(HERMOD)
        .args(["serve", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hermod");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn file_valued_keys_are_named_with_the_file() {
    let dir = std::env::temp_dir().join(format!("hermod-serve-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let listener = "[[listener]]\nbind = \"127.0.0.1:0\"\n";
    for (config, key) in [
        (
            format!("password_file = \"nope\"\n{listener}"),
            "key `password_file`",
        ),
        (format!("acl_file = \"nope\"\n{listener}"), "key `acl_file`"),
        (
            format!(
                "[auth.jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"nope.pem\"\n{listener}"
            ),
            "key `auth.jwt`",
        ),
        (
            format!(
                "{listener}transport = \"tls\"\ncertfile = \"nope.pem\"\nkeyfile = \"nope.key\"\n"
            ),
            "listener[0] (127.0.0.1:0): certfile",
        ),
    ] {
        let (code, text) = serve(&dir, &config);
        assert_eq!(code, Some(1), "exit code for {key}:\n{text}");
        assert!(text.contains("h.toml"), "names the file ({key}):\n{text}");
        assert!(text.contains(key), "names the key ({key}):\n{text}");
        assert!(
            text.contains("nope"),
            "names the missing file ({key}):\n{text}"
        );
        assert!(
            !text.contains("anonymous clients are allowed"),
            "no anonymous warning when start-up fails ({key}):\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An admin listener that cannot bind: one line naming `admin.bind`, exit 1.
#[test]
fn admin_bind_failure_is_one_line_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("hermod-serve-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[store]\nsync = \"memory\"\n\n[admin]\nbind = \"{addr}\"\n"
    );
    let (code, text) = serve(&dir, &config);
    assert_eq!(code, Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("admin.bind"))
        .unwrap_or_else(|| panic!("no line naming admin.bind:\n{text}"));
    assert!(line.starts_with("Error: admin.bind"), "{line}");
    assert!(line.contains(&addr.to_string()), "{line}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broken `[shadow]` or `[[thing_type]]`: exit 1, one error naming the file, line and key.
#[test]
fn shadow_config_errors_name_the_line_and_key() {
    let dir = std::env::temp_dir().join(format!("hermod-serve-shadow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let listener = "[[listener]]\nbind = \"127.0.0.1:0\"\n";
    for (config, needles) in [
        (
            // Read by the broker's config first (it names the table's line).
            format!("{listener}[shadow]\naccess = \"all\"\n"),
            ["line 3", "`access`"],
        ),
        (
            format!(
                "{listener}[[thing_type]]\nname = \"t\"\nschema = \"nope.json\"\nthings = [\"x\"]\n"
            ),
            ["line 5", "nope.json"],
        ),
    ] {
        let (code, text) = serve(&dir, &config);
        assert_eq!(code, Some(1), "exit code:\n{text}");
        assert!(text.contains("h.toml"), "names the file:\n{text}");
        for n in needles {
            assert!(text.contains(n), "{n:?} in:\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
