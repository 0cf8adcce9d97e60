//! `hermod sub` (placeholder, being written).

/// Flags of `hermod sub`.
#[derive(Debug, clap::Args)]
pub(crate) struct SubArgs {}

pub(crate) async fn run(_args: SubArgs) -> u8 {
    0
}
