//! Resolving a USER string (`uid`, `name`, `uid:gid`, `name:group`) to
//! numeric ids using the image's /etc/passwd and /etc/group, plus the
//! user's supplementary groups.
//!
//! Upstream counterpart: runc's `libcontainer/user` (GetExecUser), which
//! containerd's CRI plugin relies on.

use super::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = Passwd<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

/// (name, gid, members) from /etc/group.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect());
        Some((f[0], f[2].parse().ok()?, members.unwrap_or_default()))
    })
}

/// Resolves `spec` (empty: root). A numeric uid need not exist in
/// passwd (then gid 0, home `/`), as Kubernetes' runAsUser allows; a name
/// must. `extra` groups (supplementalGroups) are appended.
pub fn resolve(
    spec: &str,
    group_override: Option<u32>,
    extra: &[u32],
    passwd: &str,
    group: &str,
) -> Result<Ids, Error> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|p| p.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|p| p.name == u)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!("no user {u:?} in the image's /etc/passwd"))
                })?,
        ),
    };
    let uid = entry
        .as_ref()
        .map(|e| e.uid)
        .unwrap_or_else(|| u.parse().unwrap_or(0));
    let mut gid = entry.as_ref().map(|e| e.gid).unwrap_or(0);
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|(name, _, _)| *name == g)
                .map(|(_, id, _)| id)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!("no group {g:?} in the image's /etc/group"))
                })?,
        };
    }
    if let Some(g) = group_override {
        gid = g;
    }
    let mut groups = Vec::new();
    if let Some(e) = &entry {
        for (_, id, members) in group_entries(group) {
            if members.contains(&e.name) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    for g in extra {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups,
        home: entry
            .map(|e| e.home.to_string())
            .unwrap_or_else(|| "/".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1001:\nstaff:x:50:web,other\n";

    #[test]
    fn names_numbers_and_groups() {
        let r = resolve("", None, &[], PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let w = resolve("web", None, &[7], PASSWD, GROUP).unwrap();
        assert_eq!((w.uid, w.gid, w.groups), (1000, 1001, vec![50, 7]));
        let n = resolve("4242:staff", None, &[], PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 50, "/"));
        assert_eq!(resolve("1000", Some(9), &[], PASSWD, GROUP).unwrap().gid, 9);
        assert!(resolve("nobody", None, &[], PASSWD, GROUP).is_err());
        assert!(resolve("web:nogroup", None, &[], PASSWD, GROUP).is_err());
    }
}
