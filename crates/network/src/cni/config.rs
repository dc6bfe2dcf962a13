//! CNI network configuration: the first file (in lexical order) of the
//! configuration directory that holds a valid network — a `.conflist`
//! (a named list of chained plugins) or a single-plugin `.conf`/`.json`,
//! treated as a list of one — and the config each plugin of the chain
//! gets on stdin (its own object plus the list's `name` and
//! `cniVersion`, and `prevResult` where the spec asks for it).
//!
//! Upstream counterpart: libcni's `conf.go` (`ConfFiles`,
//! `ConfListFromFile`, `ConfListFromConf`) and `buildOneConfig`, and the
//! kubelet/containerd choice of the first config in the directory.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Error;

/// A network: a named chain of plugins sharing one spec version.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's own object (with at least `type`).
    pub plugins: Vec<Map<String, Value>>,
    /// `disableCheck`: the runtime must not send CHECK.
    pub disable_check: bool,
    /// Where it came from, for messages.
    pub source: PathBuf,
}

impl NetworkList {
    /// Parses a `.conflist`, or a single `.conf` (`conflist` false).
    pub fn parse(bytes: &[u8], conflist: bool, source: &Path) -> Result<NetworkList, Error> {
        let bad = |reason: String| Error::Config {
            path: source.to_path_buf(),
            reason,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut obj) = v else {
            return Err(bad("not a JSON object".into()));
        };
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no network name".into()))?
            .to_string();
        // Configs written before the field existed mean the oldest spec.
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_string();
        let disable_check = obj
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let plugins = if conflist {
            let Some(Value::Array(list)) = obj.remove("plugins") else {
                return Err(bad("no plugins list".into()));
            };
            list.into_iter()
                .map(|p| match p {
                    Value::Object(o) => Ok(o),
                    _ => Err(bad("a plugin is not a JSON object".into())),
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![obj]
        };
        if plugins.is_empty() {
            return Err(bad("the plugins list is empty".into()));
        }
        for p in &plugins {
            if p.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(bad("a plugin has no type".into()));
            }
        }
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
            disable_check,
            source: source.to_path_buf(),
        })
    }

    /// The type (binary name) of plugin `i`.
    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// What plugin `i` reads on stdin.
    pub fn plugin_config(&self, i: usize, prev_result: Option<&Value>) -> Vec<u8> {
        let mut o = self.plugins[i].clone();
        o.insert("name".into(), Value::String(self.name.clone()));
        o.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        match prev_result {
            Some(r) => {
                o.insert("prevResult".into(), r.clone());
            }
            None => {
                o.remove("prevResult");
            }
        }
        serde_json::to_vec(&Value::Object(o)).expect("a JSON map serialises")
    }

    /// The whole list as JSON, for the attachment cache.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "cniVersion": self.cni_version,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }
}

/// Loads the network the runtime uses: the first parseable config file
/// of `dir` in lexical order (as the kubelet's CNI plugin did and
/// containerd does). Files that fail to parse are skipped with a warning.
pub fn load(dir: &Path) -> Result<NetworkList, Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoConfig(dir.to_path_buf()))
        }
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    for f in files {
        let conflist = f.extension().and_then(|e| e.to_str()) == Some("conflist");
        let bytes = match std::fs::read(&f) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "cni: unreadable config");
                continue;
            }
        };
        match NetworkList::parse(&bytes, conflist, &f) {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(error = %e, "cni: skipping config"),
        }
    }
    Err(Error::NoConfig(dir.to_path_buf()))
}

/// Orders spec versions ("0.4.0" < "1.0.0"); unparsable parts count as 0.
pub fn version_at_least(v: &str, min: (u32, u32, u32)) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let t = (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    );
    t >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn the_first_valid_config_in_lexical_order_wins() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(load(d.path()), Err(Error::NoConfig(_))));
        std::fs::write(d.path().join("05-broken.conflist"), "{not json").unwrap();
        std::fs::write(d.path().join("10-podnet.conflist"), LIST).unwrap();
        std::fs::write(
            d.path().join("20-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"ptp"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("00-ignored.txt"), "x").unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!(l.name, "podnet");
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugin_type(1), "portmap");
        std::fs::remove_file(d.path().join("10-podnet.conflist")).unwrap();
        let l = load(d.path()).unwrap();
        assert_eq!((l.name.as_str(), l.plugin_type(0)), ("single", "ptp"));
        assert_eq!(l.cni_version, "0.4.0");
        assert!(matches!(
            load(&d.path().join("missing")),
            Err(Error::NoConfig(_))
        ));
    }

    #[test]
    fn plugins_get_the_list_name_version_and_prev_result() {
        let l = NetworkList::parse(LIST.as_bytes(), true, Path::new("x")).unwrap();
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]});
        let c: Value = serde_json::from_slice(&l.plugin_config(1, Some(&prev))).unwrap();
        assert_eq!(c["name"], "podnet");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["type"], "portmap");
        assert_eq!(c["prevResult"], prev);
        let c: Value = serde_json::from_slice(&l.plugin_config(0, None)).unwrap();
        assert!(c.get("prevResult").is_none());
        assert_eq!(c["ipam"]["type"], "host-local");
    }

    #[test]
    fn invalid_configs_say_why() {
        for (text, list, why) in [
            (
                r#"{"cniVersion":"1.0.0","plugins":[]}"#,
                true,
                "no network name",
            ),
            (r#"{"name":"n","plugins":[]}"#, true, "empty"),
            (r#"{"name":"n","plugins":[{"ipam":{}}]}"#, true, "no type"),
            (r#"{"name":"n"}"#, false, "no type"),
            (r#"[1]"#, false, "not a JSON object"),
        ] {
            let e = NetworkList::parse(text.as_bytes(), list, Path::new("/etc/cni/net.d/x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("/etc/cni/net.d/x"), "{e}");
        }
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(version_at_least("0.10.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
    }
}
