//! The event table, for core/v1 and events.k8s.io/v1 events alike.
//!
//! Upstream counterpart: printEvent and formatEventSource in
//! pkg/printers/internalversion/printers.go. Upstream prints the internal
//! event type, which both served versions convert to; here each version is
//! mapped onto the same view (`note` is the message, `regarding` the
//! involved object, `deprecated*` the legacy timestamps, count and source).

use super::super::{column, decode, doc, human_duration, meta_doc, name, wide, Column, Printer};
use k8s_openapi::api::{core::v1 as core, events::v1 as events};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

const EVENT_TYPE: &str = "io.k8s.api.core.v1.Event";

pub(in crate::table) static EVENT: Printer = Printer {
    columns,
    row: |object, now| {
        let view = if object.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1") {
            from_events_v1(decode("Event", object)?)
        } else {
            from_core(decode("Event", object)?)
        };
        Ok(view.cells(now))
    },
};

fn columns() -> Vec<Column> {
    let reference = "io.k8s.api.core.v1.ObjectReference";
    vec![
        column("Last Seen", "string", doc(EVENT_TYPE, "lastTimestamp")),
        column("Type", "string", doc(EVENT_TYPE, "type")),
        column("Reason", "string", doc(EVENT_TYPE, "reason")),
        column("Object", "string", doc(EVENT_TYPE, "involvedObject")),
        wide(column("Subobject", "string", doc(reference, "fieldPath"))),
        wide(column("Source", "string", doc(EVENT_TYPE, "source"))),
        column("Message", "string", doc(EVENT_TYPE, "message")),
        wide(column(
            "First Seen",
            "string",
            doc(EVENT_TYPE, "firstTimestamp"),
        )),
        wide(column("Count", "string", doc(EVENT_TYPE, "count"))),
        Column {
            format: "name",
            ..wide(column("Name", "string", meta_doc("name")))
        },
    ]
}

/// The fields the table shows, common to both event versions.
struct View {
    metadata: ObjectMeta,
    first_timestamp: Option<Timestamp>,
    last_timestamp: Option<Timestamp>,
    event_time: Option<Timestamp>,
    series: Option<(i32, Option<Timestamp>)>,
    count: i32,
    type_: String,
    reason: String,
    object: core::ObjectReference,
    source: core::EventSource,
    reporting_controller: String,
    reporting_instance: String,
    message: String,
}

fn from_core(e: core::Event) -> View {
    View {
        metadata: e.metadata,
        first_timestamp: e.first_timestamp.map(|t| t.0),
        last_timestamp: e.last_timestamp.map(|t| t.0),
        event_time: e.event_time.map(|t| t.0),
        series: e
            .series
            .map(|s| (s.count.unwrap_or(0), s.last_observed_time.map(|t| t.0))),
        count: e.count.unwrap_or(0),
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        object: e.involved_object,
        source: e.source.unwrap_or_default(),
        reporting_controller: e.reporting_component.unwrap_or_default(),
        reporting_instance: e.reporting_instance.unwrap_or_default(),
        message: e.message.unwrap_or_default(),
    }
}

fn from_events_v1(e: events::Event) -> View {
    View {
        metadata: e.metadata,
        first_timestamp: e.deprecated_first_timestamp.map(|t| t.0),
        last_timestamp: e.deprecated_last_timestamp.map(|t| t.0),
        event_time: e.event_time.map(|t| t.0),
        series: e.series.map(|s| (s.count, Some(s.last_observed_time.0))),
        count: e.deprecated_count.unwrap_or(0),
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        object: e.regarding.unwrap_or_default(),
        source: e.deprecated_source.unwrap_or_default(),
        reporting_controller: e.reporting_controller.unwrap_or_default(),
        reporting_instance: e.reporting_instance.unwrap_or_default(),
        message: e.note.unwrap_or_default(),
    }
}

fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "<unknown>".to_owned(),
        |t| human_duration(now.duration_since(t)),
    )
}

fn first_non_empty(a: Option<&str>, b: &str) -> String {
    a.filter(|s| !s.is_empty()).unwrap_or(b).to_owned()
}

impl View {
    fn cells(self, now: Timestamp) -> Vec<Value> {
        let first = match self.first_timestamp {
            Some(t) => since(Some(t), now),
            None => since(self.event_time, now),
        };
        let mut last = match self.last_timestamp {
            Some(t) => since(Some(t), now),
            None => first.clone(),
        };
        let mut count = self.count;
        if let Some((series_count, observed)) = self.series {
            last = since(observed, now);
            count = series_count;
        } else if count == 0 {
            // Singleton events of the new API carry no count.
            count = 1;
        }
        let kind = self.object.kind.clone().unwrap_or_default().to_lowercase();
        let target = match self.object.name.as_deref() {
            Some(n) if !n.is_empty() => format!("{kind}/{n}"),
            _ => kind,
        };
        let component =
            first_non_empty(self.source.component.as_deref(), &self.reporting_controller);
        let instance = first_non_empty(self.source.host.as_deref(), &self.reporting_instance);
        let source = if instance.is_empty() {
            component
        } else {
            format!("{component}, {instance}")
        };
        vec![
            last.into(),
            self.type_.into(),
            self.reason.into(),
            target.into(),
            self.object.field_path.unwrap_or_default().into(),
            source.into(),
            self.message.trim().to_owned().into(),
            first.into(),
            count.into(),
            name(&self.metadata),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn core_event_row() {
        let e = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled image \n",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z",
            "count": 4
        });
        let cells = EVENT.row(&e, now()).unwrap();
        assert_eq!(
            cells,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, node1"),
                json!("pulled image"),
                json!("10m"),
                json!(4),
                json!("web.17a"),
            ]
        );
        assert_eq!(columns().len(), cells.len());
    }

    #[test]
    fn events_v1_event_uses_event_time_series_and_reporting_controller() {
        let e = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x"},
            "eventTime": "2024-05-01T11:30:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2024-05-01T11:58:00.000000Z"},
            "regarding": {"kind": "Node"},
            "reportingController": "rkube/scheduler", "reportingInstance": "",
            "reason": "Scheduled", "type": "Normal", "note": "ok", "action": "Binding"
        });
        let cells = EVENT.row(&e, now()).unwrap();
        assert_eq!(cells[0], "2m");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[5], "rkube/scheduler");
        assert_eq!(cells[6], "ok");
        assert_eq!(cells[7], "30m");
        assert_eq!(cells[8], 7);
    }
}
