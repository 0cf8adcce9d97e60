//! The connected session: `-d` debug lines, keep alive pings, error reports, DISCONNECT.

use std::io::Write;
use std::time::Duration;

use hermod_client::{ClientError, Connection};
use hermod_proto::{Disconnect, Packet, ProtocolVersion, ReasonCode};
use tokio::time::Instant;

use super::texts::{MOSQ_ERR_CONN_LOST, MOSQ_ERR_PROTOCOL, mosq_strerror, reason_string};

/// The connected client as the tools see it: connection, the id shown in debug lines, and state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) conn: Connection,
    pub(crate) debug_id: String,
    pub(crate) debug: bool,
    pub(crate) quiet: bool,
    pub(crate) version: ProtocolVersion,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) last_out: Instant,
    pub(crate) ping_sent: Option<Instant>,
}

impl Session {
    /// A `-d` line on stdout ("Client <id> <text>").
    pub(crate) fn dbg(&self, text: std::fmt::Arguments<'_>) {
        if self.debug && !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Client {} {}", self.debug_id, text);
            let _ = out.flush();
        }
    }

    /// An error message on stderr unless `--quiet`.
    pub(crate) fn err(&self, text: std::fmt::Arguments<'_>) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Queues a packet (printing its debug line first) and flushes.
    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.send_mid(packet, None).await
    }

    /// As `send`; `mid` is the message id shown for a QoS 0 PUBLISH (libmosquitto numbers every
    /// message, though only QoS 1/2 carry the id on the wire).
    pub(crate) async fn send_mid(
        &mut self,
        packet: &Packet,
        mid: Option<u16>,
    ) -> Result<(), ClientError> {
        self.debug_sending(packet, mid);
        self.conn.send(packet).await?;
        self.last_out = Instant::now();
        Ok(())
    }

    fn debug_sending(&self, packet: &Packet, mid: Option<u16>) {
        if !self.debug || self.quiet {
            return;
        }
        match packet {
            Packet::Publish(p) => self.dbg(format_args!(
                "sending PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(mid.unwrap_or(0), |id| id.get()),
                p.topic,
                p.payload.len()
            )),
            Packet::PublishAck(a) => self.dbg(format_args!(
                "sending PUBACK (m{}, rc{})",
                a.packet_id, a.reason.0
            )),
            Packet::PublishReceived(a) => {
                self.dbg(format_args!(
                    "sending PUBREC (m{}, rc{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishRelease(a) => {
                self.dbg(format_args!("sending PUBREL (m{})", a.packet_id))
            }
            Packet::PublishComplete(a) => {
                self.dbg(format_args!("sending PUBCOMP (m{})", a.packet_id))
            }
            Packet::Subscribe(s) => {
                for (filter, opts) in &s.filters {
                    let options = u8::from(opts.no_local) << 2
                        | u8::from(opts.retain_as_published) << 3
                        | (opts.retain_handling as u8) << 4;
                    self.dbg(format_args!(
                        "sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x{:02x})",
                        s.packet_id, filter, opts.qos as u8, options
                    ));
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    self.dbg(format_args!(
                        "sending UNSUBSCRIBE (Mid: {}, Topic: {})",
                        u.packet_id, f
                    ));
                }
            }
            Packet::PingRequest => self.dbg(format_args!("sending PINGREQ")),
            Packet::PingResponse => self.dbg(format_args!("sending PINGRESP")),
            Packet::Disconnect(_) => self.dbg(format_args!("sending DISCONNECT")),
            Packet::Connect(_) => self.dbg(format_args!("sending CONNECT")),
            other => self.dbg(format_args!(
                "sending {}",
                hermod_client::packet_name(other)
            )),
        }
    }

    /// Prints the `-d` line for a received packet.
    pub(crate) fn debug_received(&self, packet: &Packet) {
        if !self.debug || self.quiet {
            return;
        }
        match packet {
            Packet::Publish(p) => self.dbg(format_args!(
                "received PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(0, |id| id.get()),
                p.topic,
                p.payload.len()
            )),
            Packet::PublishAck(a) => {
                self.dbg(format_args!(
                    "received PUBACK (Mid: {}, RC:{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishComplete(a) => {
                self.dbg(format_args!(
                    "received PUBCOMP (Mid: {}, RC:{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishReceived(a) => {
                self.dbg(format_args!("received PUBREC (Mid: {})", a.packet_id))
            }
            Packet::PublishRelease(a) => {
                self.dbg(format_args!("received PUBREL (Mid: {})", a.packet_id))
            }
            Packet::Disconnect(_) => {}
            other => self.dbg(format_args!(
                "received {}",
                hermod_client::packet_name(other)
            )),
        }
    }

    /// When the next PINGREQ is due (far future when keep alive is off).
    pub(crate) fn next_ping(&self) -> Instant {
        match self.keepalive {
            Some(k) => match self.ping_sent {
                // A ping is out: the connection is declared lost one keep alive later.
                Some(t) => t + k,
                None => self.last_out + k,
            },
            None => Instant::now() + Duration::from_secs(86_400),
        }
    }

    /// Called when `next_ping` passes: sends PINGREQ, or reports the connection lost when the
    /// previous one went unanswered. `Err(exit code)` to stop.
    pub(crate) async fn on_ping_timer(&mut self) -> Result<(), u8> {
        if self.keepalive.is_none() {
            return Ok(());
        }
        if self.ping_sent.is_some() {
            self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
            return Err(MOSQ_ERR_CONN_LOST);
        }
        if let Err(e) = self.send(&Packet::PingRequest).await {
            return Err(self.report_io(&e));
        }
        self.ping_sent = Some(Instant::now());
        Ok(())
    }

    /// Handles PINGRESP bookkeeping; true when the packet was one.
    pub(crate) fn on_pingresp(&mut self, packet: &Packet) -> bool {
        if matches!(packet, Packet::PingResponse) {
            self.ping_sent = None;
            true
        } else {
            false
        }
    }

    /// Reports a failure on an established connection and returns the exit code.
    pub(crate) fn report_io(&self, e: &ClientError) -> u8 {
        match e {
            ClientError::Decode(_) | ClientError::Protocol(_) | ClientError::Encode(_) => {
                self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_PROTOCOL)));
                MOSQ_ERR_PROTOCOL
            }
            _ => {
                self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
                MOSQ_ERR_CONN_LOST
            }
        }
    }

    /// Reports a DISCONNECT sent by the server (v5 carries a reason) and returns the exit code.
    pub(crate) fn report_server_disconnect(&self, d: &Disconnect) -> u8 {
        if self.version.is_v5() && d.reason != ReasonCode::NORMAL_DISCONNECTION {
            self.err(format_args!("Error: {}", reason_string(d.reason.0)));
            return d.reason.0;
        }
        self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
        MOSQ_ERR_CONN_LOST
    }

    /// Sends DISCONNECT (with `reason` in v5) and closes; errors are ignored, as at exit.
    pub(crate) async fn disconnect(&mut self, reason: ReasonCode) {
        let d = Disconnect {
            reason,
            ..Disconnect::default()
        };
        self.dbg(format_args!("sending DISCONNECT"));
        if self.conn.disconnect_with(d).await.is_err() {
            return;
        }
        // Let the broker read the DISCONNECT before the socket closes: drain until it closes
        // its side (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(Some(_)) = self.conn.recv().await {}
        })
        .await;
    }
}
