//! Replication sessions for `mode = "cdc"`: the slot's stream of committed transactions,
//! and a temporary slot whose exported snapshot a baseline dumps. On `pgwire-replication`
//! (tokio-postgres speaks no replication protocol). TLS follows the URL's `sslmode` as
//! lifeboat's other sessions do: `require` encrypts without verifying, `prefer` tries TLS
//! first, `disable` never.

use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, TlsConfig};
use tokio_postgres::config::SslMode;

use crate::{PgError, Target};

pub use pgwire_replication::{Lsn as WalPosition, ReplicationEvent};

/// A session's settings: the slot and publication it streams, from `start` (`None`: where
/// the slot was confirmed), reporting `ack` as flushed until told more.
fn config(target: &Target, slot: &str, publication: &str, ack: Option<u64>) -> ReplicationConfig {
    let (host, port) = target.endpoint();
    let mut cfg = ReplicationConfig::new(
        host,
        target.user(),
        target.password().unwrap_or_default(),
        target.database(),
        slot,
        publication,
    )
    .with_port(port)
    .with_start_lsn(Lsn::ZERO)
    .with_status_interval(Duration::from_millis(500))
    .with_application_name("lifeboat-cdc")
    // Values printed as the replay's session compares them.
    .with_options(super::apply::OPTIONS);
    if let Some(ack) = ack {
        cfg = cfg.with_ack_lsn(Lsn::from_u64(ack));
    }
    cfg
}

fn error(target: &Target, e: pgwire_replication::PgWireError) -> PgError {
    let mut message = e.to_string();
    if let Some(pw) = target.password().filter(|p| !p.is_empty()) {
        message = message.replace(&pw, "[redacted]");
    }
    let hint = if message.contains("55006") || message.contains("is active for PID") {
        Some("another process streams this slot (an earlier `cdc run` still running?)".into())
    } else if message.contains("permission denied")
        || message.contains("must be superuser or replication role")
    {
        Some("the role needs the REPLICATION attribute (RDS: `rds_replication`); run `lifeboat cdc check`".into())
    } else {
        None
    };
    PgError::Connect {
        server: format!("{}/{}", target.server(), target.database()),
        message: format!("replication session: {message}"),
        hint,
        code: None,
    }
}

/// Connect with the URL's `sslmode`; `prefer` falls back to plain when the server has no
/// TLS.
async fn connect(
    cfg: ReplicationConfig,
    target: &Target,
    gated: bool,
) -> Result<ReplicationClient, PgError> {
    let go = |tls: TlsConfig| {
        let cfg = cfg.clone().with_tls(tls);
        async move {
            if gated {
                ReplicationClient::connect_gated(cfg).await
            } else {
                ReplicationClient::connect(cfg).await
            }
        }
    };
    let tls = match target.ssl_mode() {
        SslMode::Disable => TlsConfig::disabled(),
        SslMode::Require => TlsConfig::require(),
        _ if offers_tls(target).await => TlsConfig::require(),
        _ => TlsConfig::disabled(),
    };
    go(tls).await.map_err(|e| error(target, e))
}

/// Whether the server answers an SSLRequest with yes (`prefer`: TLS when offered).
async fn offers_tls(target: &Target) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (host, port) = target.endpoint();
    if host.starts_with('/') {
        return false;
    }
    let asked = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        // Length 8, then the SSLRequest code 80877103.
        s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer[0] == b'S')
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), asked).await,
        Ok(Ok(true))
    )
}

/// The stream of `slot`: committed transactions after its confirmed position; `ack` is
/// what is known durable (reported to the server as flushed until raised).
pub async fn stream(
    target: &Target,
    slot: &str,
    publication: &str,
    ack: Option<u64>,
) -> Result<ReplicationClient, PgError> {
    connect(config(target, slot, publication, ack), target, false).await
}

/// A temporary slot's exported snapshot: while this lives (and runs no further command),
/// `pg_dump --snapshot=<name>` sees the database exactly as of `consistent_lsn`; the
/// stream of any older slot has every transaction that commits after it.
pub struct ExportedSnapshot {
    _session: ReplicationClient,
    pub name: String,
    pub consistent_lsn: String,
}

pub async fn export_snapshot(
    target: &Target,
    temp_slot: &str,
) -> Result<ExportedSnapshot, PgError> {
    let mut session = connect(config(target, temp_slot, "unused", None), target, true).await?;
    let rows = session
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {temp_slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
        ))
        .await
        .map_err(|e| error(target, e))?;
    let cell = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let (consistent_lsn, name) = (cell(1), cell(2));
    if name.is_empty() {
        return Err(PgError::Io(
            "the server exported no snapshot for the baseline".into(),
        ));
    }
    Ok(ExportedSnapshot {
        _session: session,
        name,
        consistent_lsn,
    })
}

/// `0/16B3748` as a number.
pub fn lsn(text: &str) -> Option<u64> {
    Lsn::parse(text).ok().map(Lsn::as_u64)
}

/// A number as `0/16B3748`.
pub fn lsn_text(n: u64) -> String {
    Lsn::from_u64(n).to_pg_string()
}
