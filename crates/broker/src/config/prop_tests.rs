//! Randomised tests of the config parser. Generated configurations (every top-level key, the
//! `[store]` table, one to three listeners of each transport) are written as TOML and must parse
//! back to themselves. Then the TOML is mutated with knowledge of its structure (a value
//! replaced by one of another type or range, a key removed, an unknown key added) and as text;
//! `Config::parse` must return a config or an error that names the file, never panic.

use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::{
    Config, ConfigError, CorruptSetting, ListenerConfig, QueueOverflow, StoreSection, SyncSetting,
};
use crate::fuzz_support::{fuzz_config, mutated_text};
use crate::transport::Transport;

const PATH: &str = "/etc/hermod/hermod.toml";

fn listener() -> impl Strategy<Value = ListenerConfig> {
    let bind = prop_oneof![
        any::<u16>().prop_map(|p| format!("127.0.0.1:{p}")),
        any::<u16>().prop_map(|p| format!("[::1]:{p}")),
        any::<u16>().prop_map(|p| format!("0.0.0.0:{p}")),
    ];
    let transport = prop_oneof![
        Just(Transport::Tcp),
        Just(Transport::Tls),
        Just(Transport::Ws),
        Just(Transport::Wss),
    ];
    (
        bind,
        proptest::option::of("[a-z][a-z0-9-]{0,8}"),
        transport,
        proptest::option::of("/[a-z/]{0,8}"),
        any::<bool>(),
        proptest::option::of(1u64..100_000),
        proptest::option::of(1usize..1_000_000),
        any::<bool>(),
    )
        .prop_map(
            |(bind, name, transport, path, proxy, timeout, max, client_certs)| {
                let tls = transport.is_tls();
                ListenerConfig {
                    bind,
                    name,
                    transport,
                    certfile: tls.then(|| PathBuf::from("certs/server.pem")),
                    keyfile: tls.then(|| PathBuf::from("certs/server.key")),
                    cafile: (tls && client_certs).then(|| PathBuf::from("certs/ca.pem")),
                    require_certificate: tls && client_certs,
                    crlfile: None,
                    use_identity_as_username: tls && client_certs,
                    path: if transport.is_websocket() { path } else { None },
                    proxy_protocol: proxy,
                    handshake_timeout: timeout,
                    max_connections: max,
                }
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    let limits = (
        any::<u16>(),
        64u32..=268_435_460,
        1u16..,
        1usize..10_000_000,
        0usize..1 << 40,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((
            0u32..1000,
            proptest::sample::select(&["s", "m", "h", "d", "w", "y"][..]),
        )),
    );
    let more = (
        any::<u16>(),
        1usize..1000,
        23usize..100_000,
        1usize..1_000_000,
        1u64..100_000,
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        proptest::option::of("[a-z/]{1,12}"),
    );
    let store = (
        "[a-z][a-z/._-]{0,12}",
        prop_oneof![
            Just(SyncSetting::Batch),
            Just(SyncSetting::Os),
            Just(SyncSetting::Memory)
        ],
        prop_oneof![Just(CorruptSetting::Fail), Just(CorruptSetting::Quarantine)],
        0u64..1 << 50,
    )
        .prop_map(|(path, sync, on_corrupt, max_disk_bytes)| StoreSection {
            path: PathBuf::from(path),
            sync,
            on_corrupt,
            max_disk_bytes,
        });
    (limits, more, store, vec(listener(), 1..4)).prop_map(
        |(
            (keepalive, packet, inflight, queued, bytes, oldest, qos0, expiration),
            (alias, levels, id_len, conns, timeout, retain, anon, files),
            store,
            listeners,
        )| Config {
            allow_anonymous: anon,
            password_file: files.as_ref().map(|f| PathBuf::from(format!("{f}.passwd"))),
            acl_file: files.as_ref().map(|f| PathBuf::from(format!("{f}.acl"))),
            max_keepalive: keepalive,
            max_packet_size: packet,
            max_inflight_messages: inflight,
            max_queued_messages: queued,
            max_queued_bytes: bytes,
            queue_overflow: if oldest {
                QueueOverflow::DropOldest
            } else {
                QueueOverflow::DropNew
            },
            queue_qos0_messages: qos0,
            persistent_client_expiration: expiration.map(|(n, u)| format!("{n}{u}")),
            max_topic_alias: alias,
            max_topic_levels: levels,
            max_client_id_length: id_len,
            max_connections: conns,
            connect_timeout: timeout,
            retain_available: retain,
            listeners,
            store,
            ..Config::default()
        },
    )
}

/// A TOML value of any type, with the edge values of the integer types the keys use.
fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(63),
            Just(65_535),
            Just(65_536),
            Just(268_435_461),
            Just(i64::from(u32::MAX) + 1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>(),
        ]
        .prop_map(toml::Value::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            any::<f64>()
        ]
        .prop_map(toml::Value::Float),
        prop_oneof![
            Just(String::new()),
            Just("tcp".to_owned()),
            Just("wss".to_owned()),
            Just("memory".to_owned()),
            Just("drop_oldest".to_owned()),
            Just("localhost".to_owned()),
            Just("[::]:1883".to_owned()),
            Just("99999999999999999999y".to_owned()),
            Just("1é".to_owned()),
            "[ -~]{0,12}",
        ]
        .prop_map(toml::Value::String),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            vec(("[a-z_]{1,8}", inner), 0..3)
                .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
}

/// A structural edit of the parsed TOML document.
#[derive(Debug, Clone)]
enum TomlEdit {
    /// Replace the n-th leaf value (in a depth-first walk) by another value.
    Replace(Index, toml::Value),
    /// Remove the n-th leaf.
    Remove(Index),
    /// Add a key (known or unknown) to the n-th table.
    Add(Index, String, toml::Value),
}

fn toml_edit() -> impl Strategy<Value = TomlEdit> {
    let key = prop_oneof![
        "[a-z_]{1,12}",
        proptest::sample::select(
            &[
                "max_keepalive",
                "max_packet_size",
                "listener",
                "store",
                "auth",
                "bind",
                "transport",
                "sync",
                "handshake_timeout",
                "persistent_client_expiration",
                "http",
                "jwt",
                "order",
            ][..]
        )
        .prop_map(str::to_owned),
    ];
    prop_oneof![
        3 => (any::<Index>(), value()).prop_map(|(i, v)| TomlEdit::Replace(i, v)),
        1 => any::<Index>().prop_map(TomlEdit::Remove),
        2 => (any::<Index>(), key, value()).prop_map(|(i, k, v)| TomlEdit::Add(i, k, v)),
    ]
}

/// Paths to every leaf (key path) and every table in `v`.
fn walk(
    v: &toml::Value,
    path: &mut Vec<String>,
    leaves: &mut Vec<Vec<String>>,
    tables: &mut Vec<Vec<String>>,
) {
    match v {
        toml::Value::Table(t) => {
            tables.push(path.clone());
            for (k, child) in t {
                path.push(k.clone());
                walk(child, path, leaves, tables);
                path.pop();
            }
        }
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
            for (i, child) in a.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, leaves, tables);
                path.pop();
            }
        }
        _ => leaves.push(path.clone()),
    }
}

fn get_mut<'a>(v: &'a mut toml::Value, path: &[String]) -> Option<&'a mut toml::Value> {
    path.iter().try_fold(v, |v, k| match v {
        toml::Value::Table(t) => t.get_mut(k),
        toml::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Applies `edit`; returns the name of a key it added, if new to its table.
fn apply(doc: &mut toml::Value, edit: &TomlEdit) -> Option<String> {
    let (mut leaves, mut tables) = (Vec::new(), Vec::new());
    walk(doc, &mut Vec::new(), &mut leaves, &mut tables);
    match edit {
        TomlEdit::Replace(i, new) if !leaves.is_empty() => {
            let path = &leaves[i.index(leaves.len())];
            if let Some(v) = get_mut(doc, path) {
                *v = new.clone();
            }
            None
        }
        TomlEdit::Remove(i) if !leaves.is_empty() => {
            let path = &leaves[i.index(leaves.len())];
            let (last, parent) = path.split_last()?;
            if let Some(toml::Value::Table(t)) = get_mut(doc, parent) {
                t.remove(last);
            }
            None
        }
        TomlEdit::Add(i, key, v) => {
            let path = &tables[i.index(tables.len())];
            match get_mut(doc, path) {
                Some(toml::Value::Table(t)) if !t.contains_key(key) => {
                    t.insert(key.clone(), v.clone());
                    Some(key.clone())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Every key of the tables a generated document has (top level, `[store]`, `[[listener]]`).
const KNOWN_KEYS: &[&str] = &[
    "allow_anonymous",
    "password_file",
    "acl_file",
    "auth",
    "max_keepalive",
    "max_packet_size",
    "max_inflight_messages",
    "max_queued_messages",
    "max_queued_bytes",
    "queue_overflow",
    "queue_qos0_messages",
    "persistent_client_expiration",
    "max_topic_alias",
    "max_topic_levels",
    "max_client_id_length",
    "max_connections",
    "connect_timeout",
    "set_tcp_nodelay",
    "retain_available",
    "listener",
    "store",
    "path",
    "sync",
    "on_corrupt",
    "max_disk_bytes",
    "bind",
    "name",
    "transport",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "crlfile",
    "use_identity_as_username",
    "proxy_protocol",
    "handshake_timeout",
];

fn check_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(
        msg.starts_with(PATH),
        "error does not name the file: {}",
        msg
    );
    if let ConfigError::Read { .. } = e {
        return Err(TestCaseError::fail("parse read a file"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(600, 0x4845_524D_4F44_0501))]

    /// Generated configurations written as TOML parse back to themselves.
    #[test]
    fn generated_configs_round_trip(cfg in config()) {
        let text = toml::to_string(&cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut parsed = Config::parse(&text, Path::new(PATH))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.base_dir.take(), Some(PathBuf::from("/etc/hermod")));
        prop_assert_eq!(parsed, cfg);
    }

    /// Structure-aware mutations: values of another type or out of range, keys removed, known
    /// and unknown keys added. A config or an error naming the file; an added key that the
    /// table does not know is refused by name.
    #[test]
    fn mutated_configs_parse_or_name_the_file(
        cfg in config(),
        edits in vec(toml_edit(), 1..4),
    ) {
        let mut doc = toml::Value::try_from(&cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut added = Vec::new();
        for e in &edits {
            added.extend(apply(&mut doc, e));
        }
        let Ok(text) = toml::to_string(&doc) else {
            return Ok(()); // not representable as a TOML document (e.g. a value at the root)
        };
        let result = Config::parse(&text, Path::new(PATH));
        if let Err(e) = &result {
            check_error(e)?;
        }
        // A single edit that added a key no table of the config has: refused, by name.
        if let ([_], [key]) = (&edits[..], &added[..])
            && !KNOWN_KEYS.contains(&key.as_str())
        {
            let msg = result.err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(msg.contains(key.as_str()), "unknown key {} not named: {:?}", key, msg);
        }
    }

    /// Text-level mutations of a generated file (broken syntax, duplicated lines and keys,
    /// stray characters): a config or an error naming the file.
    #[test]
    fn mutated_text_parses_or_names_the_file(
        text in config().prop_flat_map(|c| mutated_text(toml::to_string(&c).unwrap_or_default())),
    ) {
        match Config::parse(&text, Path::new(PATH)) {
            Ok(_) => {}
            Err(e) => check_error(&e)?,
        }
    }
}

/// An unknown key is refused by name wherever it is added (top level, `[store]`, a listener).
#[test]
fn unknown_keys_are_refused_by_name() {
    let base = "[store]\npath = \"d\"\n\n[[listener]]\nbind = \"127.0.0.1:1883\"\n";
    for (at, text) in [
        ("top", format!("bogus_key = 1\n{base}")),
        (
            "store",
            base.replace("[store]\n", "[store]\nbogus_key = 1\n"),
        ),
        ("listener", format!("{base}bogus_key = 1\n")),
    ] {
        let e = Config::parse(&text, Path::new(PATH)).expect_err(at);
        let msg = e.to_string();
        assert!(
            msg.starts_with(PATH) && msg.contains("bogus_key"),
            "{at}: {msg}"
        );
    }
}
