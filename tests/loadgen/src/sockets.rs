//! Room for many connections: the open-file limit raised to its hard limit,
//! and connections spread over loopback source addresses so that no one
//! address runs out of ephemeral ports.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, bail};

/// Descriptors kept aside beyond the connections: stdio, the runtime's
/// epoll and wake-up fds, a connection being replaced.
const FD_SLACK: u64 = 64;

/// Linux's default `ip_local_port_range` (32768–60999), when it cannot be read.
const DEFAULT_EPHEMERAL_PORTS: u64 = 28_232;

/// Last octet of the first extra source address (127.0.0.2); 127.0.0.1 is
/// left to the connections the kernel places itself.
const FIRST_SOURCE: u8 = 2;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, then checks
/// that `connections` connections fit; `hint` ends the error (another flag
/// that needs fewer). Returns the soft limit now in force.
pub(crate) fn ensure_fds(connections: u64, hint: &str) -> anyhow::Result<u64> {
    let soft = rlimit::increase_nofile_limit(u64::MAX)
        .context("raising the open-file limit (RLIMIT_NOFILE)")?;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .context("reading the open-file limit (RLIMIT_NOFILE)")?;
    if let Err(msg) = fds_fit(connections, soft, hard) {
        bail!("{msg}{hint}");
    }
    Ok(soft)
}

/// Whether `connections` (plus [`FD_SLACK`]) fit under the soft limit
/// `soft`; otherwise the message telling how to raise it.
fn fds_fit(connections: u64, soft: u64, hard: u64) -> Result<(), String> {
    let want = connections.saturating_add(FD_SLACK);
    if want <= soft {
        return Ok(());
    }
    let how = if want <= hard {
        String::new()
    } else {
        format!(" (above the hard limit {hard}: as root, or raise the hard limit first)")
    };
    Err(format!(
        "this run opens about {connections} connections and needs about {want} open files, \
         but the limit is {soft}: run `ulimit -n {want}` in the shell that starts \
         agw-loadgen{how}, and give the gateway as many"
    ))
}

/// Size of the local ephemeral port range, from
/// `/proc/sys/net/ipv4/ip_local_port_range` or Linux's default.
pub(crate) fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| port_range_size(&text))
        .unwrap_or(DEFAULT_EPHEMERAL_PORTS)
}

/// Ports in an `ip_local_port_range` line (`"32768\t60999\n"`).
fn port_range_size(text: &str) -> Option<u64> {
    let mut bounds = text.split_whitespace().map(str::parse::<u64>);
    let (low, high) = (bounds.next()?.ok()?, bounds.next()?.ok()?);
    (high >= low).then(|| high - low + 1)
}

/// Source addresses to spread `connections` to `target` over, each taking
/// at most half of `ports` (the other half leaves room for the sockets of
/// an earlier run still in `TIME_WAIT`). Empty when one address suffices or
/// the target is not an IPv4 loopback address (a source in 127.0.0.0/8
/// reaches only those): the kernel then picks the source as usual.
pub(crate) fn source_addresses(
    target: Option<IpAddr>,
    connections: u64,
    ports: u64,
) -> anyhow::Result<Vec<IpAddr>> {
    let per_source = (ports / 2).max(1);
    if connections <= per_source {
        return Ok(Vec::new());
    }
    let Some(IpAddr::V4(target)) = target.filter(IpAddr::is_loopback) else {
        // `localhost` or [::1]: no spreading; the kernel may still cope
        // (ports are per destination when the source is not bound).
        return Ok(Vec::new());
    };
    let needed = connections.div_ceil(per_source);
    let available = u64::from(u8::MAX - FIRST_SOURCE);
    if needed > available {
        bail!(
            "{connections} connections need {needed} source addresses of {per_source} ports each; \
             at most {available} are available in 127.0.0.0/8"
        );
    }
    let [a, b, c, _] = target.octets();
    Ok((0..needed)
        .map(|i| {
            // `needed` fits in the octet: checked above.
            let last = FIRST_SOURCE + u8::try_from(i).unwrap_or(u8::MAX - FIRST_SOURCE);
            IpAddr::V4(Ipv4Addr::new(a, b, c, last))
        })
        .collect())
}

/// The source address of the `i`th client: round robin over `sources`, or
/// none (the kernel's choice) when there are none.
pub(crate) fn source_for(sources: &[IpAddr], i: usize) -> Option<IpAddr> {
    (!sources.is_empty()).then(|| sources[i % sources.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limits() {
        assert!(fds_fit(1_000, 20_000, 20_000).is_ok());
        assert!(fds_fit(20_000 - FD_SLACK, 20_000, 20_000).is_ok());
        let short = fds_fit(20_000, 20_000, 20_000).unwrap_err();
        assert!(short.contains("ulimit -n 20064"), "{short}");
        assert!(short.contains("above the hard limit 20000"), "{short}");
        // Within the hard limit: only `ulimit -n` is needed.
        let soft = fds_fit(2_000, 1_024, 65_536).unwrap_err();
        assert!(soft.contains("ulimit -n 2064"), "{soft}");
        assert!(!soft.contains("hard"), "{soft}");
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let soft = ensure_fds(1, "").unwrap();
        let (now, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!((soft, now), (hard, hard));
        if hard < u64::MAX / 2 {
            assert!(ensure_fds(hard, " or fewer").is_err());
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range_size("32768\t60999\n"), Some(28_232));
        assert_eq!(port_range_size("1024 1024"), Some(1));
        assert_eq!(port_range_size("60999 32768"), None);
        assert_eq!(port_range_size("x"), None);
        assert!(ephemeral_ports() >= 1);
    }

    #[test]
    fn sources_spread_only_when_ports_run_short() {
        let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        // 28,232 ports: 14,116 per address.
        assert!(source_addresses(local, 14_116, 28_232).unwrap().is_empty());
        let two = source_addresses(local, 14_117, 28_232).unwrap();
        assert_eq!(
            two,
            [
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
            ]
        );
        assert_eq!(source_addresses(local, 40_000, 28_232).unwrap().len(), 3);
        // Same /24 as a target elsewhere in 127.0.0.0/8.
        let other = Some(IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)));
        assert_eq!(
            source_addresses(other, 3, 4).unwrap(),
            [
                IpAddr::V4(Ipv4Addr::new(127, 1, 2, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))
            ]
        );
        // IPv6 or a name: left to the kernel.
        assert!(
            source_addresses(Some("::1".parse().unwrap()), 40_000, 28_232)
                .unwrap()
                .is_empty()
        );
        assert!(source_addresses(None, 40_000, 28_232).unwrap().is_empty());
        // More than 127.0.0.2-254 can hold.
        assert!(source_addresses(local, 1_000, 2).is_err());
    }

    #[test]
    fn clients_take_sources_round_robin() {
        let s: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(source_for(&s, 0), Some(s[0]));
        assert_eq!(source_for(&s, 3), Some(s[1]));
        assert_eq!(source_for(&[], 3), None);
    }

    /// A client bound to 127.0.0.2 reaches a gateway on 127.0.0.1, which
    /// sees that source.
    #[tokio::test]
    async fn a_bound_client_reaches_the_loopback_target() {
        use std::io::{Read as _, Write as _};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin =
            crate::cli::parse_origin(&format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, peer) = listener.accept().unwrap();
            let mut head = [0; 1024];
            let _ = tcp.read(&mut head).unwrap();
            tcp.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            peer.ip()
        });
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let client = crate::client::Client::bound(
            &origin,
            None,
            std::time::Duration::from_secs(5),
            Some(source),
        );
        let reply = client.get("/").await.unwrap();
        assert_eq!(reply.status.as_u16(), 204);
        assert_eq!(server.join().unwrap(), source);
        assert_eq!(origin.ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
