//! The IP addresses of each network interface: IPv6 from
//! `<proc>/net/if_inet6`, IPv4 from the kernel's rtnetlink address dump
//! (`RTM_GETADDR`; no file in /proc lists IPv4 addresses by interface —
//! `/proc/net/fib_trie` shows only the main and local tables' prefixes, and a
//! tailnet's `/32` has no route there to name its interface).
//!
//! Both read the network namespace the agent runs in: an agent in a
//! container sees the host's addresses only with the host network.
//! Parsing is split from I/O: both parsers take what the kernel wrote.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The addresses of one interface, in the kernel's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses (with a `:label` alias folded into its interface).
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses of global scope (ULA included), then link-local ones.
    pub ipv6: Vec<Ipv6Addr>,
}

impl Addresses {
    /// The one address a person copies: the first IPv4, else the first
    /// non-link-local IPv6.
    pub fn primary(&self) -> Option<String> {
        self.ipv4.first().map(ToString::to_string).or_else(|| {
            self.ipv6
                .iter()
                .find(|a| !is_link_local(a))
                .map(ToString::to_string)
        })
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Interface name → its addresses.
pub type ByInterface = BTreeMap<String, Addresses>;

/// Adds the IPv6 addresses in `/proc/net/if_inet6` to `out`: one line per
/// address, `ADDR32HEX IFINDEX PREFIXLEN SCOPE FLAGS NAME`. Link-local
/// addresses (scope 0x20) go after the others; host-scope (`::1`) are left out.
pub fn add_if_inet6(text: &str, out: &mut ByInterface) {
    let mut link_local: Vec<(String, Ipv6Addr)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(hex), Some(scope), Some(name)) = (f.first(), f.get(3), f.get(5)) else {
            continue;
        };
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        if hex.len() != 32 {
            continue;
        }
        let addr = Ipv6Addr::from(bits);
        match u8::from_str_radix(scope, 16) {
            Ok(0x10) => {}
            Ok(0x20) => link_local.push((name.to_string(), addr)),
            Ok(_) => out.entry(name.to_string()).or_default().ipv6.push(addr),
            Err(_) => {}
        }
    }
    for (name, addr) in link_local {
        out.entry(name).or_default().ipv6.push(addr);
    }
}

/// `RTM_NEWADDR`, the kernel's answer type for each address.
const RTM_NEWADDR: u16 = 20;
/// `RTM_GETADDR`, the request.
const RTM_GETADDR: u16 = 22;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `IFA_LOCAL`: the interface's own address (`IFA_ADDRESS` is the peer's
/// on point-to-point links).
const IFA_LOCAL: u16 = 2;
/// `IFA_LABEL`: the interface name, with `:alias` for a labelled address.
const IFA_LABEL: u16 = 3;
/// `AF_INET`.
const AF_INET: u8 = 2;
/// `RT_SCOPE_HOST`: 127.0.0.1 and friends.
const RT_SCOPE_HOST: u8 = 254;

/// The request for a dump of every IPv4 address: an `nlmsghdr` and an
/// `ifaddrmsg` asking for `AF_INET`.
pub fn getaddr_request(seq: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&24u32.to_ne_bytes());
    b[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
    // NLM_F_REQUEST | NLM_F_DUMP
    b[6..8].copy_from_slice(&0x0301u16.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b[16] = AF_INET;
    b
}

/// What one datagram of the dump held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpPart {
    /// The `NLMSG_DONE` message was in it: the dump is complete.
    pub done: bool,
    /// The kernel answered with an error (its errno).
    pub error: Option<i32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Adds the IPv4 addresses in one datagram of an `RTM_GETADDR` dump to
/// `out`, skipping host-scope ones (127.0.0.1). Stops at anything malformed.
pub fn add_getaddr_dump(bytes: &[u8], out: &mut ByInterface) -> DumpPart {
    let mut part = DumpPart::default();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(bytes, at), u16_at(bytes, at + 4)) {
        let len = len as usize;
        let Some(msg) = bytes.get(at..at + len).filter(|_| len >= 16) else {
            break;
        };
        match kind {
            NLMSG_DONE => part.done = true,
            NLMSG_ERROR => {
                let errno = msg
                    .get(16..20)
                    .and_then(|e| e.try_into().ok())
                    .map(i32::from_ne_bytes);
                part.error = errno.filter(|e| *e != 0).map(|e| -e);
                part.done = true;
            }
            RTM_NEWADDR => add_newaddr(msg, out),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    part
}

/// One `RTM_NEWADDR`: `ifaddrmsg` (family, prefixlen, flags, scope, index)
/// then attributes.
fn add_newaddr(msg: &[u8], out: &mut ByInterface) {
    let (Some(&family), Some(&scope)) = (msg.get(16), msg.get(19)) else {
        return;
    };
    if family != AF_INET || scope == RT_SCOPE_HOST {
        return;
    }
    let mut local = None;
    let mut label = None;
    let mut at = 24;
    while let (Some(len), Some(kind)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = usize::from(len);
        let Some(value) = msg.get(at + 4..at + len).filter(|_| len >= 4) else {
            break;
        };
        match kind {
            IFA_LOCAL => {
                if let Ok(octets) = <[u8; 4]>::try_from(value) {
                    local = Some(Ipv4Addr::from(octets));
                }
            }
            IFA_LABEL => {
                let name = value.split(|b| *b == 0).next().unwrap_or_default();
                label = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    if let (Some(addr), Some(label)) = (local, label) {
        // "eth0:1" is an alias label of eth0.
        let name = label.split(':').next().unwrap_or_default().to_string();
        out.entry(name).or_default().ipv4.push(addr);
    }
}

/// Asks the kernel for every IPv4 address of this network namespace.
pub fn dump_ipv4(out: &mut ByInterface) -> std::io::Result<()> {
    use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};
    // No protocol: NETLINK_ROUTE is netlink's default (0).
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(1)),
    )?;
    send(&fd, &getaddr_request(1), SendFlags::empty())?;
    let mut buf = vec![0u8; 32 * 1024];
    // A dump of thousands of addresses spans many datagrams; a bound keeps
    // a confused kernel answer from looping forever.
    for _ in 0..1024 {
        let (n, _) = recv(&fd, &mut buf[..], RecvFlags::empty())?;
        let part = add_getaddr_dump(buf.get(..n).unwrap_or_default(), out);
        if let Some(errno) = part.error {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        if part.done || n == 0 {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::fixture;

    fn dump(name: &str) -> ByInterface {
        let bytes = std::fs::read(fixture(&format!("netlink/{name}"))).expect("fixture");
        let mut out = ByInterface::new();
        let part = add_getaddr_dump(&bytes, &mut out);
        assert!(part.done && part.error.is_none(), "{part:?}");
        out
    }

    #[test]
    fn the_ipv4_dump_gives_each_interface_its_addresses_without_loopback() {
        let out = dump("getaddr-inet-debian12.bin");
        assert_eq!(out.keys().collect::<Vec<_>>(), ["eth0"]);
        assert_eq!(out["eth0"].ipv4, [Ipv4Addr::new(192, 0, 2, 2)]);
    }

    #[test]
    fn a_tailnet_slash_32_and_an_alias_label_land_on_their_interfaces() {
        let mut out = dump("getaddr-inet-tailnet.bin");
        let text = std::fs::read_to_string(fixture("proc/tailnet/net/if_inet6")).expect("fixture");
        add_if_inet6(&text, &mut out);
        let ts = &out["tailscale0"];
        assert_eq!(ts.ipv4, [Ipv4Addr::new(100, 101, 102, 103)]);
        assert_eq!(ts.primary().as_deref(), Some("100.101.102.103"));
        assert_eq!(
            ts.ipv6.first().map(ToString::to_string).as_deref(),
            Some("fd7a:115c:a1e0::1234"),
            "global before link-local"
        );
        let eth0 = &out["eth0"];
        assert_eq!(
            eth0.ipv4,
            [Ipv4Addr::new(192, 168, 1, 20), Ipv4Addr::new(192, 168, 1, 21)]
        );
        assert_eq!(eth0.ipv6.len(), 2);
        assert!(!out.contains_key("lo"), "::1 and 127.0.0.1 are left out");
        assert!(out["n2peer0"].ipv4.is_empty());
        assert_eq!(out["n2peer0"].primary(), None, "link-local only: nothing to copy");
    }

    #[test]
    fn the_request_asks_for_a_dump_of_ipv4_addresses() {
        let r = getaddr_request(7);
        assert_eq!(u32_at(&r, 0), Some(24));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETADDR));
        assert_eq!(r[16], AF_INET);
    }

    #[test]
    fn truncated_or_garbage_bytes_stop_the_parse_without_a_panic() {
        let bytes = std::fs::read(fixture("netlink/getaddr-inet-tailnet.bin")).expect("fixture");
        for cut in [0, 3, 17, 40, bytes.len() - 1] {
            let mut out = ByInterface::new();
            add_getaddr_dump(bytes.get(..cut).unwrap_or_default(), &mut out);
        }
        let mut out = ByInterface::new();
        assert!(!add_getaddr_dump(&[0xff; 64], &mut out).done);
    }

    #[test]
    fn the_real_kernel_answers_a_dump() {
        // This namespace's own addresses; only that the exchange completes.
        let mut out = ByInterface::new();
        dump_ipv4(&mut out).expect("rtnetlink dump");
    }
}
