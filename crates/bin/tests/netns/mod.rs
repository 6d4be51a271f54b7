//! Network namespaces for tests that need a link per host (the RPKI
//! bandwidth test): one hub namespace holding two bridges — the "far"
//! network where the repositories live (10.201.0.0/24, the hub itself is
//! 10.201.0.1) and the "near" backbone between the hosts (10.202.0.0/24,
//! hub 10.202.0.1) — and one namespace per host, attached to each bridge
//! by a veth pair. Host `i` is 10.201.0.(10+i) and 10.202.0.(10+i). A
//! host's far link can be shaped with a `tbf` qdisc in both directions
//! (its access link to the repositories); the near links are not shaped.
//!
//! The test's own thread enters the hub with `setns`, so servers and
//! clients it starts afterwards (and the threads of a runtime it builds
//! then) live on the hub. Hosts run programs through `ip netns exec`.
//!
//! Test support only. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); every
//! name carries the worktree tag and the process id; everything is removed
//! on drop (deleting a namespace deletes its end of each pair), and
//! namespaces left by a killed test run (its process gone) are removed by
//! the next. Programs run on a host die with the thread that started them
//! (`PR_SET_PDEATHSIG`). Must never touch the machine's own namespace:
//! every `ip`/`tc` call names its namespace.
#![allow(dead_code)]

use anyhow::{bail, Context};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// The repositories' address on the far network (the hub's).
pub const REPOS_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 201, 0, 1));
/// Most hosts (addresses .10 to .(10 + HOSTS_MAX - 1)).
pub const HOSTS_MAX: usize = 32;

/// The namespaces and links; removed on drop.
pub struct Net {
    prefix: String,
    hosts: usize,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !o.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

impl Net {
    /// Removes namespaces named for `tag` whose test process is gone.
    fn sweep(tag: &str) {
        let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        let prefix = format!("rm{tag}");
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }

    /// Creates the hub and `hosts` host namespaces, all links up.
    pub fn create(tag: &str, hosts: usize) -> anyhow::Result<Net> {
        if hosts > HOSTS_MAX {
            bail!("at most {HOSTS_MAX} hosts");
        }
        Net::sweep(tag);
        let net = Net {
            prefix: format!("rm{tag}{}", std::process::id()),
            hosts: 0,
        };
        let mut net = net;
        let hub = net.hub();
        run(&["ip", "netns", "add", &hub])?;
        // From here on, drop removes what exists.
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        for (br, addr) in [("far", "10.201.0.1/24"), ("near", "10.202.0.1/24")] {
            run(&["ip", "-n", &hub, "link", "add", br, "type", "bridge"])?;
            run(&["ip", "-n", &hub, "addr", "add", addr, "dev", br])?;
            run(&["ip", "-n", &hub, "link", "set", br, "up"])?;
        }
        for i in 0..hosts {
            let ns = net.host(i);
            run(&["ip", "netns", "add", &ns])?;
            net.hosts = i + 1;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            for (br, side, inside, subnet) in [("far", "f", "far0", "10.201.0"), ("near", "n", "near0", "10.202.0")] {
                let port = format!("{side}{i}");
                run(&[
                    "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", inside, "netns", &ns,
                ])?;
                run(&["ip", "-n", &hub, "link", "set", &port, "master", br])?;
                run(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
                let addr = format!("{subnet}.{}/24", 10 + i);
                run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", inside])?;
                run(&["ip", "-n", &ns, "link", "set", inside, "up"])?;
            }
        }
        Ok(net)
    }

    /// Creates the namespaces, or says why not: then the test is skipped
    /// (None) on a developer machine and fails under CI (env `CI` set),
    /// where scripts/test runs as root.
    pub fn create_or_skip(tag: &str, hosts: usize) -> Option<Net> {
        match Net::create(tag, hosts) {
            Ok(n) => Some(n),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("network namespaces are needed (CI runs as root): {e:#}")
            }
            Err(e) => {
                eprintln!("skipped: cannot create network namespaces here: {e:#}");
                None
            }
        }
    }

    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    pub fn host(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Host `i`'s address on the far (repositories') network.
    pub fn far_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 201, 0, 10 + i as u8))
    }

    /// Host `i`'s address on the near (backbone) network.
    pub fn near_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 202, 0, 10 + i as u8))
    }

    /// Moves the calling thread into the hub namespace (threads it starts
    /// later are there too).
    pub fn enter_hub(&self) -> anyhow::Result<()> {
        let path = format!("/run/netns/{}", self.hub());
        let f = std::fs::File::open(&path).with_context(|| path.clone())?;
        // SAFETY: setns on a namespace file descriptor we hold open; it
        // changes only the calling thread's network namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Shapes host `i`'s far link to `rate_bytes_s` in each direction with
    /// a token bucket (`tbf`); None removes the shaping.
    pub fn shape(&self, i: usize, rate_bytes_s: Option<u64>) -> anyhow::Result<()> {
        let (hub, ns, port) = (self.hub(), self.host(i), format!("f{i}"));
        for (ns, dev) in [(hub.as_str(), port.as_str()), (ns.as_str(), "far0")] {
            match rate_bytes_s {
                Some(r) => {
                    let rate = format!("{}bit", r * 8);
                    // A burst of 1/50 s of traffic, at least 32 KiB.
                    let burst = (r / 50).max(32 * 1024).to_string();
                    run(&[
                        "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate,
                        "burst", &burst, "latency", "400ms",
                    ])?;
                }
                None => {
                    let _ = run(&["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"]);
                }
            }
        }
        Ok(())
    }

    /// Bytes the hub has sent to host `i` on its far link (what the host
    /// downloaded from the repositories) and on its near link.
    pub fn bytes_to(&self, i: usize) -> anyhow::Result<(u64, u64)> {
        let read = |dev: String| -> anyhow::Result<u64> {
            let o = Command::new("ip")
                .args(["-n", &self.hub(), "-j", "-s", "link", "show", "dev", &dev])
                .output()?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).context("ip -j -s link")?;
            v[0]["stats64"]["tx"]["bytes"]
                .as_u64()
                .with_context(|| format!("no tx bytes for {dev}"))
        };
        Ok((read(format!("f{i}"))?, read(format!("n{i}"))?))
    }

    /// `program` to be run in host `i`'s namespace; it is killed if the
    /// thread that starts it ends (a test killed mid-run leaves nothing).
    pub fn command(&self, i: usize, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(i), program]);
        // SAFETY: prctl is async-signal-safe; it only sets this child's
        // parent-death signal, kept across `ip netns exec`'s execve.
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = run(&["ip", "netns", "del", &self.host(i)]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub()]);
    }
}
