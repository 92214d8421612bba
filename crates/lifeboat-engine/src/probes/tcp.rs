//! `tcp`: `host:port` accepts a connection.

use lifeboat_core::Redacted;

use super::Seen;

pub async fn run(address: &Redacted) -> Result<Seen, String> {
    let addr = address.expose();
    let began = std::time::Instant::now();
    tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("`{addr}` refused or unreachable: {e}"))?;
    Ok(Seen {
        detail: format!(
            "`{addr}` accepted a connection in {} ms",
            began.elapsed().as_millis()
        ),
        ..Seen::default()
    })
}
