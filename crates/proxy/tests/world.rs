//! The proxy's store: watch events mark the Services they touch, so a
//! sync recomputes only those; a relist recomputes everything.

mod common;

use common::{service, slice};
use kube::runtime::watcher::Event;
use rkube_proxy::watch::{NodeProxy, World};

fn node() -> NodeProxy {
    NodeProxy {
        node_name: "n1".into(),
        rules: common::cfg(),
        local_dns: None,
    }
}

fn listed() -> World {
    let mut w = World::default();
    w.service_event(Event::Init);
    w.slice_event(Event::Init);
    assert!(!w.ready());
    for name in ["a", "b"] {
        w.service_event(Event::InitApply(service(
            name,
            serde_json::json!({"clusterIP": if name == "a" {"10.43.0.40"} else {"10.43.0.41"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        )));
        w.slice_event(Event::InitApply(slice(
            name,
            &[("10.42.0.2", true, "n1")],
            "http",
            8080,
        )));
    }
    w.service_event(Event::InitDone);
    assert!(!w.ready(), "ready before the slices are listed");
    w.slice_event(Event::InitDone);
    assert!(w.ready());
    w
}

#[test]
fn a_relist_syncs_everything_then_only_touched_services() {
    let mut w = listed();
    let (which, ports) = w.take_changes(&node(), false);
    assert!(which.is_none(), "first sync after a list covers everything");
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0].endpoints.len(), 1);

    // A slice change marks only its Service.
    w.slice_event(Event::Apply(slice(
        "b",
        &[("10.42.0.3", true, "n1")],
        "http",
        8080,
    )));
    let (which, ports) = w.take_changes(&node(), false);
    assert_eq!(
        which.unwrap().into_iter().collect::<Vec<_>>(),
        ["default/b"]
    );
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].endpoints[0].ip.to_string(), "10.42.0.3");

    // Nothing touched: nothing to do.
    let (which, ports) = w.take_changes(&node(), false);
    assert!(which.unwrap().is_empty() && ports.is_empty());

    // A slice relabelled to another Service leaves the first one empty.
    let mut moved = slice("b", &[("10.42.0.3", true, "n1")], "http", 8080);
    moved
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("kubernetes.io/service-name".into(), "a".into());
    w.slice_event(Event::Apply(moved));
    let (which, ports) = w.take_changes(&node(), false);
    assert_eq!(
        which.unwrap().into_iter().collect::<Vec<_>>(),
        ["default/a", "default/b"]
    );
    let b = ports.iter().find(|p| p.name == "b").unwrap();
    assert!(b.endpoints.is_empty());
    let a = ports.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a.endpoints.len(), 2);

    // A deleted Service has no ports; its key is still reported so its
    // rules are removed.
    w.service_event(Event::Delete(service("a", serde_json::json!({}))));
    let (which, ports) = w.take_changes(&node(), false);
    assert_eq!(
        which.unwrap().into_iter().collect::<Vec<_>>(),
        ["default/a"]
    );
    assert!(ports.is_empty());

    // After a failed sync the caller asks for everything; then partial
    // syncs again.
    let (which, ports) = w.take_changes(&node(), true);
    assert!(which.is_none());
    assert_eq!(ports.len(), 1);
    assert!(w.take_changes(&node(), false).0.is_some());

    // A relist asks for everything once, even if the caller also did.
    w.service_event(Event::Init);
    w.service_event(Event::InitDone);
    assert!(w.take_changes(&node(), true).0.is_none());
    assert!(w.take_changes(&node(), false).0.is_some());
}
