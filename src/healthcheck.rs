//! `job-launcher-mock healthcheck`: asks a running service whether it is up, with a
//! plain HTTP/1.0 request, so a container image needs no curl.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok` when `GET /actuator/health` on the service at `bind:port` answers 200; the error
/// says what went wrong.
pub fn check(bind: IpAddr, port: u16) -> Result<(), String> {
    // A service bound to every address is reached on loopback.
    let host = if bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind
    };
    let addr = SocketAddr::new(host, port);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("cannot set a timeout: {e}"))?;
    stream
        .write_all(b"GET /actuator/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or("");
    let status = status_line.split_whitespace().nth(1);
    if status == Some("200") && answer.contains("\"UP\"") {
        Ok(())
    } else {
        Err(format!("{addr} answered {status_line:?}"))
    }
}
