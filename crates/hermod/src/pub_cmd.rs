//! `hermod pub` (placeholder, being written).

/// Flags of `hermod pub`.
#[derive(Debug, clap::Args)]
pub(crate) struct PubArgs {}

pub(crate) async fn run(_args: PubArgs) -> u8 {
    0
}
