//! CNI mode against a scripted plugin set: chaining, caching, DEL order
//! and prevResult, failure clean-up, VERSION checks.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;

/// One recorded call: plugin, command, container id, netns, stdin.
type Call = (String, Op, String, String, Value);

/// Plays a bridge (with its own IPAM) and a portmap plugin; records
/// every call (the pods' loopback apart).
#[derive(Debug, Default)]
struct Plugins {
    calls: Mutex<Vec<Call>>,
    loopbacks: Mutex<Vec<(String, String)>>,
    next: Mutex<u32>,
    fail_add: Mutex<Option<&'static str>>,
    versions: Vec<&'static str>,
}

impl Plugins {
    fn new() -> Plugins {
        Plugins {
            versions: vec!["0.3.1", "0.4.0", "1.0.0"],
            ..Default::default()
        }
    }

    fn ops(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(p, op, ..)| format!("{p} {}", op.as_str()))
            .collect()
    }
}

impl Invoke for Plugins {
    fn invoke(&self, plugin: &str, req: &Request<'_>) -> Result<Vec<u8>, Error> {
        let stdin: Value = serde_json::from_slice(req.stdin).unwrap();
        if plugin == "loopback" {
            assert_eq!((req.op, req.ifname), (Op::Add, "lo"));
            let who = (req.container_id.to_string(), req.netns.to_string());
            self.loopbacks.lock().unwrap().push(who);
            // A node without the plugin: attaching goes on without it.
            return Err(Error::PluginNotFound {
                plugin: plugin.into(),
                dirs: String::new(),
            });
        }
        self.calls.lock().unwrap().push((
            plugin.into(),
            req.op,
            req.container_id.into(),
            req.netns.into(),
            stdin.clone(),
        ));
        let out = match (req.op, plugin) {
            (Op::Version, _) => json!({"cniVersion": "1.0.0", "supportedVersions": self.versions}),
            (Op::Add, p) if *self.fail_add.lock().unwrap() == Some(p) => {
                return Err(Error::Plugin {
                    plugin: p.into(),
                    op: "ADD",
                    code: 11,
                    msg: "no IP addresses available in range set".into(),
                })
            }
            (Op::Add, "bridge") => {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                json!({
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": req.netns}],
                    "ips": [{"address": format!("10.1.0.{}/24", 1 + *n), "interface": 1},
                            {"address": "10.1.0.1/24", "interface": 0}]
                })
            }
            // A pass-through plugin returns what it was given.
            (Op::Add, _) => stdin["prevResult"].clone(),
            _ => return Ok(Vec::new()),
        };
        Ok(serde_json::to_vec(&out).unwrap())
    }
}

const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
    {"type":"bridge","bridge":"cni0"},{"type":"portmap"}]}"#;

fn setup(list: &str) -> (tempfile::TempDir, Arc<Plugins>, CniNetwork) {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("10-podnet.conflist"), list).unwrap();
    let plugins = Arc::new(Plugins::new());
    let net = CniNetwork::new(plugins.clone(), &conf, &d.path().join("cache"));
    (d, plugins, net)
}

fn pod(uid: &str) -> PodRef<'_> {
    PodRef {
        namespace: "default",
        name: "web",
        uid,
    }
}

#[test]
fn add_chains_results_and_a_retry_does_not_add_again() {
    let (d, plugins, net) = setup(LIST);
    let ns = d.path().join("ns1");
    std::fs::write(&ns, "").unwrap();
    let ips = net.attach(&pod("u1"), &ns).unwrap();
    assert_eq!(
        ips.ips,
        vec!["10.1.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        plugins.ops(),
        [
            "bridge VERSION",
            "portmap VERSION",
            "bridge ADD",
            "portmap ADD"
        ]
    );
    {
        let calls = plugins.calls.lock().unwrap();
        let (_, _, cid, netns, bridge_in) = &calls[2];
        assert_eq!(cid, "u1");
        assert_eq!(netns, &ns.to_string_lossy());
        assert_eq!(bridge_in["name"], "podnet");
        assert!(bridge_in.get("prevResult").is_none());
        let portmap_in = &calls[3].4;
        assert_eq!(portmap_in["prevResult"]["ips"][0]["address"], "10.1.0.2/24");
    }
    // Retried, or re-adopted by a restarted agent (a new CniNetwork over
    // the same cache): the same address, no plugin called.
    assert_eq!(net.attach(&pod("u1"), &ns).unwrap(), ips);
    let again = CniNetwork::new(plugins.clone(), &net.conf_dir, &net.cache_dir);
    assert_eq!(again.attach(&pod("u1"), &ns).unwrap(), ips);
    assert_eq!(plugins.ops().len(), 4);
    // A second pod: VERSION is not asked again.
    net.attach(&pod("u2"), &ns).unwrap();
    assert_eq!(plugins.ops()[4..], ["bridge ADD", "portmap ADD"]);
    // Each first attach brought the pod's lo up.
    let lo = plugins.loopbacks.lock().unwrap().clone();
    assert_eq!(lo.len(), 2);
    assert_eq!(lo[0], ("u1".to_string(), ns.to_string_lossy().into_owned()));
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_even_after_the_config_changed() {
    let (d, plugins, net) = setup(LIST);
    let ns = d.path().join("ns1");
    std::fs::write(&ns, "").unwrap();
    net.attach(&pod("u1"), &ns).unwrap();
    // The operator replaces the config: DEL still runs what ADD ran.
    std::fs::write(
        net.conf_dir.join("10-podnet.conflist"),
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}"#,
    )
    .unwrap();
    net.check(&pod("u1")).unwrap();
    net.detach(&pod("u1")).unwrap();
    let calls = plugins.calls.lock().unwrap();
    let ops: Vec<String> = calls[4..]
        .iter()
        .map(|(p, op, ..)| format!("{p} {}", op.as_str()))
        .collect();
    assert_eq!(
        ops,
        ["bridge CHECK", "portmap CHECK", "portmap DEL", "bridge DEL"]
    );
    for (_, _, cid, _, stdin) in &calls[4..] {
        assert_eq!(cid, "u1");
        assert_eq!(stdin["name"], "podnet");
        assert_eq!(stdin["prevResult"]["ips"][0]["address"], "10.1.0.2/24");
    }
    drop(calls);
    // Detached: a second detach does nothing.
    net.detach(&pod("u1")).unwrap();
    assert_eq!(plugins.ops().len(), 8);
}

#[test]
fn del_without_the_namespace_passes_an_empty_netns() {
    let (d, plugins, net) = setup(LIST);
    let ns = d.path().join("ns1");
    std::fs::write(&ns, "").unwrap();
    net.attach(&pod("u1"), &ns).unwrap();
    std::fs::remove_file(&ns).unwrap();
    net.detach(&pod("u1")).unwrap();
    let calls = plugins.calls.lock().unwrap();
    assert_eq!(calls.last().unwrap().1, Op::Del);
    assert_eq!(calls.last().unwrap().3, "");
}

#[test]
fn a_failed_add_undoes_the_chain_and_says_which_plugin() {
    let (d, plugins, net) = setup(LIST);
    *plugins.fail_add.lock().unwrap() = Some("portmap");
    let e = net
        .attach(&pod("u1"), &d.path().join("ns"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "plugin type=\"portmap\" failed (ADD): code 11: no IP addresses available in range set"
    );
    assert_eq!(
        plugins.ops()[2..],
        ["bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"]
    );
    // Nothing cached: the next attach adds again.
    *plugins.fail_add.lock().unwrap() = None;
    net.attach(&pod("u1"), &d.path().join("ns")).unwrap();
    assert_eq!(plugins.ops().len(), 8);
}

#[test]
fn a_new_sandbox_releases_the_old_attachment() {
    let (d, plugins, net) = setup(LIST);
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::write(&a, "").unwrap();
    net.attach(&pod("u1"), &a).unwrap();
    let ips = net.attach(&pod("u1"), &b).unwrap();
    assert_eq!(
        ips.ips,
        vec!["10.1.0.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        plugins.ops()[4..],
        ["portmap DEL", "bridge DEL", "bridge ADD", "portmap ADD"]
    );
}

#[test]
fn unsupported_versions_and_missing_configs_are_clear_errors() {
    let (d, plugins, net) = setup(&LIST.replace("1.0.0", "0.2.0"));
    let e = net
        .attach(&pod("u1"), &d.path().join("ns"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "plugin type=\"bridge\" does not support CNI version 0.2.0 (it supports 0.3.1, 0.4.0, 1.0.0)"
    );
    assert!(!plugins.ops().iter().any(|o| o.ends_with("ADD")));
    std::fs::remove_file(net.conf_dir.join("10-podnet.conflist")).unwrap();
    let e = net
        .attach(&pod("u1"), &d.path().join("ns"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no CNI network config in "), "{e}");
}

#[test]
fn old_versions_get_no_prev_result_on_del_and_no_check() {
    let (d, plugins, net) = setup(&LIST.replace("1.0.0", "0.3.1"));
    let ns = d.path().join("ns");
    std::fs::write(&ns, "").unwrap();
    net.attach(&pod("u1"), &ns).unwrap();
    net.check(&pod("u1")).unwrap();
    net.detach(&pod("u1")).unwrap();
    let calls = plugins.calls.lock().unwrap();
    // ADD chains with prevResult from 0.3.0 on ...
    assert!(calls[3].4.get("prevResult").is_some());
    // ... DEL carries it from 0.4.0 on; CHECK does not exist before.
    let ops: Vec<_> = calls[4..].iter().map(|c| c.1).collect();
    assert_eq!(ops, [Op::Del, Op::Del]);
    assert!(calls[4..].iter().all(|c| c.4.get("prevResult").is_none()));
}

/// A plugin binary (a shell script) that logs each call's command,
/// container, netns, interface and stdin, answers ADD with one address,
/// and fails CHECK with a CNI error object once `broken` exists.
const SCRIPT: &str = r#"#!/bin/sh
dir=$(dirname "$0")
input=$(cat)
printf '%s|%s|%s|%s|%s\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$input" >> "$dir/calls"
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
ADD) echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"10.9.0.2/24","interface":0}]}' ;;
CHECK) if [ -e "$dir/broken" ]; then
    echo '{"cniVersion":"1.0.0","code":999,"msg":"eth0 lost its address"}'; exit 1
  fi ;;
esac
"#;

#[test]
fn check_runs_the_plugin_with_the_cached_result_and_reports_its_error() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("fakenet");
    std::fs::write(&plugin, SCRIPT).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = d.path().join("net.d");
    let net = CniNetwork::from_config(&CniConfig {
        bin_dirs: vec![bin.clone()],
        conf_dir: conf.clone(),
        cache_dir: d.path().join("cache"),
    });
    let net: &dyn PodNetwork = &net;
    // No config yet: not ready, in the runtime's words.
    assert_eq!(net.ready(), Err(NOT_INITIALIZED.to_string()));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("10-fake.conflist"),
        r#"{"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"fakenet"}]}"#,
    )
    .unwrap();
    assert_eq!(net.ready(), Ok(()));

    let ns = d.path().join("ns");
    std::fs::write(&ns, "").unwrap();
    net.attach(&pod("u1"), &ns).unwrap();
    net.check(&pod("u1")).unwrap();
    let calls = std::fs::read_to_string(bin.join("calls")).unwrap();
    let calls: Vec<Vec<&str>> = calls.lines().map(|l| l.splitn(5, '|').collect()).collect();
    let ops: Vec<&str> = calls.iter().map(|c| c[0]).collect();
    assert_eq!(ops, ["VERSION", "ADD", "CHECK"]);
    let check = &calls[2];
    assert_eq!(check[1..4], ["u1", ns.to_str().unwrap(), IFNAME]);
    let stdin: Value = serde_json::from_str(check[4]).unwrap();
    assert_eq!(stdin["name"], "fake");
    assert_eq!(stdin["cniVersion"], "1.0.0");
    assert_eq!(stdin["prevResult"]["ips"][0]["address"], "10.9.0.2/24");

    // The plugin finds the attachment broken: its error, named.
    std::fs::write(bin.join("broken"), "").unwrap();
    let e = net.check(&pod("u1")).unwrap_err().to_string();
    assert_eq!(
        e,
        "plugin type=\"fakenet\" failed (CHECK): code 999: eth0 lost its address"
    );
    // A pod this network never attached has nothing to check.
    net.check(&pod("unknown")).unwrap();
}
