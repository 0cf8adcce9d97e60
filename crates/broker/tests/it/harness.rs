//! Test harness: the shared scaffolding of hermod-testkit (a broker on an OS-chosen port, and a
//! raw MQTT client on top of hermod-proto's codec), plus this suite's `both_versions!`.
#![allow(dead_code, unused_imports)]

pub use hermod_testkit::*;

/// Generates `mod $name { v311, v5 }` tests calling `async fn $name(ProtocolVersion)`, like
/// mosquitto's `do_test(proto_ver=4/5)`.
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn v311() {
                super::$name($crate::harness::V311).await;
            }
            #[tokio::test]
            async fn v5() {
                super::$name($crate::harness::V5).await;
            }
        }
    )*};
}
