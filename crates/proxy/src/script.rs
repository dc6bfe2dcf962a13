//! Fragments into nft scripts, each one `nft -f` transaction: a full
//! script replaces the whole table; a diff script changes only the
//! fragments that differ from what is in force. Elements that several
//! fragments hold (the cluster IP of a multi-port Service, an endpoint
//! behind two Services in the hairpin set) are counted, so only the last
//! fragment to drop one deletes it.
//!
//! Upstream counterpart: the nftables Proxier's syncProxyRules building a
//! knftables transaction (partial syncs touch only changed Services).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use crate::rules::{base, Config, Element, Fragment, TABLE};

fn set_decl(name: &str, timeout: u32) -> String {
    format!("add set ip {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}\n")
}

fn element_line(op: &str, e: &Element) -> String {
    match (&e.verdict, op) {
        (Some(v), "add") => format!("add element ip {TABLE} {} {{ {} : {v} }}\n", e.map, e.key),
        _ => format!("{op} element ip {TABLE} {} {{ {} }}\n", e.map, e.key),
    }
}

fn chain_lines(out: &mut String, name: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(out, "add rule ip {TABLE} {name} {r}");
    }
}

/// A script replacing the whole table with `fragments` in one transaction.
pub fn full(cfg: &Config, fragments: &BTreeMap<String, Fragment>) -> String {
    // Adding then deleting makes the delete succeed whether or not the
    // table exists; the new table follows in the same transaction.
    let mut out = format!("add table ip {TABLE}\ndelete table ip {TABLE}\n");
    out.push_str(&base(cfg));
    for f in fragments.values() {
        for (set, t) in &f.sets {
            out.push_str(&set_decl(set, *t));
        }
        for name in f.chains.keys() {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
    }
    for f in fragments.values() {
        for (name, rules) in &f.chains {
            chain_lines(&mut out, name, rules);
        }
    }
    let elements: BTreeSet<&Element> = fragments.values().flat_map(|f| &f.elements).collect();
    for e in elements {
        out.push_str(&element_line("add", e));
    }
    out
}

/// Fragment id to its new content; None removes the fragment.
pub type Changes = BTreeMap<String, Option<Fragment>>;

/// What is in force: the fragments and how many of them hold each element.
#[derive(Debug, Default)]
pub struct Applied {
    fragments: BTreeMap<String, Fragment>,
    counts: HashMap<Element, usize>,
}

impl Applied {
    /// The state after a full script of `fragments` was applied.
    pub fn new(fragments: BTreeMap<String, Fragment>) -> Applied {
        let mut counts = HashMap::new();
        for e in fragments.values().flat_map(|f| &f.elements) {
            *counts.entry(e.clone()).or_insert(0) += 1;
        }
        Applied { fragments, counts }
    }

    pub fn fragments(&self) -> &BTreeMap<String, Fragment> {
        &self.fragments
    }

    /// The ids of the fragments whose id starts with `prefix`.
    pub fn ids_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> {
        self.fragments
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(prefix))
    }

    /// Drops the entries of `changes` that change nothing.
    pub fn prune(&self, changes: &mut Changes) {
        changes.retain(|k, new| self.fragments.get(k) != new.as_ref());
    }

    /// A script moving the table from this state by `changes`, touching
    /// only the changed fragments. Empty when nothing changes.
    pub fn diff(&self, changes: &Changes) -> String {
        let empty = Fragment::default();
        let (mut decl, mut rules, mut del_chains, mut del_sets) =
            (String::new(), String::new(), String::new(), String::new());
        let mut delta: BTreeMap<&Element, isize> = BTreeMap::new();
        for (k, new) in changes {
            let o = self.fragments.get(k).unwrap_or(&empty);
            let n = new.as_ref().unwrap_or(&empty);
            if o == n {
                continue;
            }
            for (set, t) in &n.sets {
                // A changed timeout makes the add fail; the proxier then
                // falls back to a full resync.
                if o.sets.get(set) != Some(t) {
                    decl.push_str(&set_decl(set, *t));
                }
            }
            for (name, r) in &n.chains {
                if o.chains.get(name) == Some(r) {
                    continue;
                }
                if o.chains.contains_key(name) {
                    let _ = writeln!(decl, "flush chain ip {TABLE} {name}");
                } else {
                    let _ = writeln!(decl, "add chain ip {TABLE} {name}");
                }
                chain_lines(&mut rules, name, r);
            }
            for e in o.elements.difference(&n.elements) {
                *delta.entry(e).or_insert(0) -= 1;
            }
            for e in n.elements.difference(&o.elements) {
                *delta.entry(e).or_insert(0) += 1;
            }
            for name in o.chains.keys().filter(|c| !n.chains.contains_key(*c)) {
                // Flushed first so chains of the same fragment that jump
                // to each other can all go in one transaction.
                let _ = writeln!(decl, "flush chain ip {TABLE} {name}");
                let _ = writeln!(del_chains, "delete chain ip {TABLE} {name}");
            }
            for set in o.sets.keys().filter(|s| !n.sets.contains_key(*s)) {
                let _ = writeln!(del_sets, "delete set ip {TABLE} {set}");
            }
        }
        let (mut dels, mut adds) = (String::new(), String::new());
        for (e, d) in delta {
            let before = self.counts.get(e).copied().unwrap_or(0) as isize;
            match (before > 0, before + d > 0) {
                // A changed verdict is a delete and an add of the same
                // key; deletes go first.
                (true, false) => dels.push_str(&element_line("delete", e)),
                (false, true) => adds.push_str(&element_line("add", e)),
                _ => {}
            }
        }
        // Order: declare and flush, fill, repoint maps, then delete what
        // no element or rule references any more.
        decl + &rules + &dels + &adds + &del_chains + &del_sets
    }

    /// Records `changes` as in force (after their script was applied).
    pub fn commit(&mut self, changes: Changes) {
        for (k, new) in changes {
            if let Some(old) = self.fragments.remove(&k) {
                for e in old.elements {
                    if let Some(c) = self.counts.get_mut(&e) {
                        *c -= 1;
                        if *c == 0 {
                            self.counts.remove(&e);
                        }
                    }
                }
            }
            if let Some(n) = new {
                for e in &n.elements {
                    *self.counts.entry(e.clone()).or_insert(0) += 1;
                }
                self.fragments.insert(k, n);
            }
        }
    }
}
