//! systemd's readiness protocol (`Type=notify`): `READY=1` once `serve` listens and its
//! schedules start, `STOPPING=1` when it begins to stop. A datagram to the socket in
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace); nothing when unset.

use std::os::unix::net::UnixDatagram;

/// Tell systemd `state`; a failure is a log line (the service runs on).
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = socket.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &socket)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        log::warn!("cannot notify systemd ({state}): {e}");
    }
}
