//! `hermod serve`.

/// Flags of `hermod serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

pub(crate) async fn run(_args: ServeArgs) -> u8 {
    0
}
