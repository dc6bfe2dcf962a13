//! What the kubelet asks for: sandbox and container configuration (the
//! runtime's view of CRI's `PodSandboxConfig` / `ContainerConfig`), and
//! the pure rules that turn it plus the image config into a process.
//!
//! Upstream counterpart: kubelet's `kuberuntime_container.go` (command and
//! args), containerd's CRI `container_create_linux.go` (env, user).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::RunConfig;

/// Where the sandbox's containers get their network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A fresh network namespace (the network plugin wires it up).
    #[default]
    Pod,
    /// `hostNetwork: true`.
    Host,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub ip: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub hostname: String,
    /// `None`: the node's own /etc/resolv.conf (dnsPolicy Default).
    pub dns: Option<DnsConfig>,
    /// Extra /etc/hosts lines after the localhost ones.
    pub hosts: Vec<HostEntry>,
    pub network: NetworkMode,
    /// `shareProcessNamespace`: one PID namespace for all containers,
    /// with a reaper as its PID 1.
    pub share_pid: bool,
    /// The pod's cgroup (relative to each hierarchy), which the kubelet
    /// made; its containers' cgroups go below it, as CRI's
    /// `LinuxPodSandboxConfig.cgroup_parent`. `None`: the runtime's own
    /// parent.
    #[serde(default)]
    pub cgroup_parent: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// Overrides the image's USER: `uid`, `name`, `uid:gid` or
    /// `name:group` (runAsUser arrives as a number).
    pub user: Option<String>,
    /// runAsGroup.
    pub group: Option<u32>,
    /// supplementalGroups, added to the user's groups from /etc/group.
    pub supplemental_groups: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
    pub propagation: Propagation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Names as Kubernetes spells them (`NET_ADMIN`, or `ALL`).
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    /// Microseconds per `cpu_period` (default 100000).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Bytes; swap is limited to the same amount (no swap).
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: UserSpec,
    pub mounts: Vec<Mount>,
    pub capabilities: Capabilities,
    pub privileged: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
    pub read_only_rootfs: bool,
    pub resources: Resources,
    /// CRI log file; `None`: `container.log` in the container's state dir.
    pub log_path: Option<PathBuf>,
    /// Rotate when the file would grow past this many bytes (0: never).
    pub log_max_size: u64,
    /// Files kept including the live one (kubelet's containerLogMaxFiles).
    pub log_max_files: u32,
    /// Allocate a terminal for the container's stdio.
    pub tty: bool,
    /// Keep the main process's stdin open for attach clients (a pipe, or
    /// the terminal with `tty`).
    pub stdin: bool,
    /// Close stdin once the first client that attached with stdin left.
    #[serde(default)]
    pub stdin_once: bool,
    /// Join this container's PID namespace instead of the sandbox's (or a
    /// new one): an ephemeral container's `targetContainerName`.
    #[serde(default)]
    pub pid_target: Option<String>,
}

/// The argv Kubernetes runs: `command` replaces ENTRYPOINT (and drops
/// CMD); `args` alone replace CMD.
pub fn resolve_argv(image: &RunConfig, command: &[String], args: &[String]) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let rest = if args.is_empty() {
        image.cmd.clone().unwrap_or_default()
    } else {
        args.to_vec()
    };
    entrypoint.into_iter().chain(rest).collect()
}

/// Image env first, then the container's; a later value for a name
/// replaces the earlier one in place. PATH gets the usual default when
/// neither sets it, and HOSTNAME is the sandbox's (as containerd does).
pub fn merge_env(image: &RunConfig, env: &[(String, String)], hostname: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |k: &str, v: &str, out: &mut Vec<(String, String)>| match out
        .iter_mut()
        .find(|(name, _)| name == k)
    {
        Some(e) => e.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    if !out.iter().any(|(k, _)| k == "PATH") {
        set(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            &mut out,
        );
    }
    set("HOSTNAME", hostname, &mut out);
    for e in image.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v, &mut out);
    }
    for (k, v) in env {
        set(k, v, &mut out);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// An image STOPSIGNAL (`SIGINT`, `INT`, `2`, any case) as a number.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        "STOP" => libc::SIGSTOP,
        _ => return None,
    };
    Some(n)
}

/// /etc/hosts as the kubelet writes it for a pod.
pub fn render_hosts(entries: &[HostEntry]) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for e in entries {
        s.push_str(&format!("{}\t{}\n", e.ip, e.names.join("\t")));
    }
    s
}

pub fn render_resolv(dns: &DnsConfig) -> String {
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["c1".into(), "c2".into()]),
            env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
            ..Default::default()
        }
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        assert_eq!(resolve_argv(&image(), &[], &[]), v(&["/ep", "c1", "c2"]));
        assert_eq!(resolve_argv(&image(), &[], &v(&["a"])), v(&["/ep", "a"]));
        assert_eq!(resolve_argv(&image(), &v(&["/x"]), &[]), v(&["/x"]));
        assert_eq!(
            resolve_argv(&image(), &v(&["/x"]), &v(&["a"])),
            v(&["/x", "a"])
        );
        assert!(resolve_argv(&RunConfig::default(), &[], &[]).is_empty());
    }

    #[test]
    fn env_overrides_in_place() {
        let env = merge_env(
            &image(),
            &[("A".into(), "2".into()), ("B".into(), "x=y".into())],
            "h",
        );
        assert_eq!(env, v(&["PATH=/bin", "HOSTNAME=h", "A=2", "B=x=y"]));
    }

    #[test]
    fn stop_signals() {
        assert_eq!(parse_signal("SIGINT"), Some(2));
        assert_eq!(parse_signal("quit"), Some(3));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("SIGBOGUS"), None);
    }

    #[test]
    fn resolv_conf() {
        let dns = DnsConfig {
            servers: v(&["10.43.0.10"]),
            searches: v(&["default.svc.cluster.local", "svc.cluster.local"]),
            options: v(&["ndots:5"]),
        };
        assert_eq!(
            render_resolv(&dns),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }
}
