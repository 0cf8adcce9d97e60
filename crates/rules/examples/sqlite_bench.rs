//! Rows per second into the SQLite sink (issue 12 target: at least 50,000/s).
//!
//! `cargo run --release -p hermod-rules --example sqlite_bench [ROWS] [BATCH_SIZE]`
//!
//! Sends ROWS (default 200,000) single-row inserts of a message-sized row (client id, topic,
//! 64-byte JSON payload, timestamp) as fast as the queue takes them, retrying a refused send
//! after a yield, and reports rows/s from the first send to the end of `close` (everything
//! committed). Prints the figure; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermod_rules::sink::{Param, SinkError, SinkOptions, SqliteSink, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let batch_size: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let options = SinkOptions {
        batch_size,
        batch_time: Duration::from_millis(10),
        queue: 10_000,
        init: vec![
            "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, clientid TEXT, \
             topic TEXT, payload TEXT, ts INTEGER)"
                .to_owned(),
        ],
        ..SinkOptions::default()
    };
    let sink = SqliteSink::open(&path, options)?;
    let statement: Arc<str> =
        Arc::from("INSERT INTO messages(clientid, topic, payload, ts) VALUES (?, ?, ?, ?)");
    let start = Instant::now();
    let mut refused = 0u64;
    for i in 0..rows {
        let mut write = Write::new(
            statement.clone(),
            vec![
                Param::Text(format!("dev-{}", i % 1000)),
                Param::Text(format!("dev/gw/{}", i % 1000)),
                Param::Text(format!(
                    r#"{{"seq":{i:>10},"temp":21.5,"hum":40,"ok":true}}"#
                )),
                Param::Int(1_760_000_000_000 + i as i64),
            ],
        );
        loop {
            match sink.send(write) {
                Ok(()) => break,
                Err(e) if matches!(e.error, SinkError::QueueFull { .. }) => {
                    refused += 1;
                    write = e.write;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.error.into()),
            }
        }
    }
    let stats = sink.close()?;
    let elapsed = start.elapsed();
    println!(
        "{rows} rows in {:.3} s: {:.0} rows/s ({} transactions, {:.0} rows each; {refused} \
         sends refused by a full queue and retried; written {}, failed {})",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        stats.batches,
        stats.written as f64 / stats.batches.max(1) as f64,
        stats.written,
        stats.failed,
    );
    Ok(())
}
