//! Host candidates for `udt punch`: the addresses of this machine's
//! interfaces (IPv4 or IPv6, the family of the punch socket), from
//! `getifaddrs(3)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for addresses a peer elsewhere could possibly reach us on:
/// not loopback (unless `keep_loopback`), not unspecified or multicast,
/// and no IPv6 link-local (it needs a scope the peer cannot know).
fn usable(ip: IpAddr, keep_loopback: bool) -> bool {
    if ip.is_unspecified() || ip.is_multicast() || (ip.is_loopback() && !keep_loopback) {
        return false;
    }
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// Interface addresses of the family of `like`, usable as host
/// candidates, in the order the system lists them, without duplicates.
/// Empty when the system cannot tell (then the caller falls back to the
/// route to the broker).
pub fn interface_addresses(like: IpAddr, keep_loopback: bool) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    #[cfg(unix)]
    {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `head` with a list we free below.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            log::debug!("getifaddrs failed: {}", std::io::Error::last_os_error());
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list getifaddrs returned, not
            // yet freed; `ifa_addr` is null or points to a sockaddr whose
            // family field says which sockaddr type it is.
            let ip = unsafe {
                let ifa = &*cur;
                cur = ifa.ifa_next;
                let sa = ifa.ifa_addr;
                if sa.is_null() {
                    None
                } else {
                    match i32::from((*sa).sa_family) {
                        libc::AF_INET => {
                            let sin = &*(sa as *const libc::sockaddr_in);
                            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                                sin.sin_addr.s_addr,
                            ))))
                        }
                        libc::AF_INET6 => {
                            let sin6 = &*(sa as *const libc::sockaddr_in6);
                            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                        }
                        _ => None,
                    }
                }
            };
            if let Some(ip) = ip {
                if ip.is_ipv4() == like.is_ipv4() && usable(ip, keep_loopback) && !out.contains(&ip)
                {
                    out.push(ip);
                }
            }
        }
        // SAFETY: `head` came from a successful getifaddrs.
        unsafe { libc::freeifaddrs(head) };
    }
    #[cfg(not(unix))]
    let _ = (like, keep_loopback);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_what_no_peer_can_reach() {
        let v6 = |s: &str| IpAddr::V6(s.parse().expect("v6"));
        assert!(!usable(v6("fe80::1"), false));
        assert!(usable(v6("2001:db8::1"), false));
        assert!(!usable(v6("::1"), false));
        assert!(usable(v6("::1"), true));
        assert!(!usable(IpAddr::V4(Ipv4Addr::UNSPECIFIED), true));
        assert!(!usable(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1)), true));
        assert!(usable(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), false));
    }

    #[test]
    fn lists_only_the_family_asked_for() {
        let v4 = interface_addresses(IpAddr::V4(Ipv4Addr::LOCALHOST), true);
        assert!(v4.iter().all(IpAddr::is_ipv4));
        // Every Linux machine has loopback.
        assert!(v4.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{v4:?}");
        let v6 = interface_addresses(IpAddr::V6(Ipv6Addr::LOCALHOST), false);
        assert!(v6.iter().all(|ip| ip.is_ipv6() && !ip.is_loopback()));
    }
}
