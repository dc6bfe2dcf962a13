//! Tables of the workload kinds: controllers of pods and what scales them.
//!
//! Upstream counterpart: printDeployment, printReplicaSet, printStatefulSet,
//! printDaemonSet, printJob, printCronJob, printReplicationController,
//! printControllerRevision, printHorizontalPodAutoscaler,
//! printPodDisruptionBudget and printPodTemplate in
//! pkg/printers/internalversion/printers.go.

use super::format::{self, label_selector, selector_string, template_containers};
use super::{
    age, age_column, column, containers_columns, decode, doc, human_duration, name, name_column,
    since, wide, Column, Printer, TableError,
};
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, policy::v1 as policy,
};

mod hpa;

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("apps", "ControllerRevision") => &CONTROLLER_REVISION,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("policy", "PodDisruptionBudget") => &PDB,
        ("autoscaling", "HorizontalPodAutoscaler") => &hpa::HPA,
        _ => return None,
    })
}

const SELECTOR_DOC: &str = "io.k8s.api.apps.v1.DeploymentSpec";

fn selector_column(type_name: &str) -> Column {
    wide(column("Selector", "string", doc(type_name, "selector")))
}

fn with_template_columns(mut columns: Vec<Column>, selector_of: Option<&str>) -> Vec<Column> {
    columns.extend(containers_columns());
    if let Some(type_name) = selector_of {
        columns.push(selector_column(type_name));
    }
    columns
}

static DEPLOYMENT: Printer = Printer {
    columns: || {
        let status = "io.k8s.api.apps.v1.DeploymentStatus";
        with_template_columns(
            vec![
                name_column(),
                column("Ready", "string", "Number of the pod with ready state"),
                column("Up-to-date", "string", doc(status, "updatedReplicas")),
                column("Available", "string", doc(status, "availableReplicas")),
                age_column(),
            ],
            Some(SELECTOR_DOC),
        )
    },
    row: |object, now| {
        let d: apps::Deployment = decode("Deployment", object)?;
        let spec = d.spec.unwrap_or_default();
        let status = d.status.unwrap_or_default();
        let (names, images) = template_containers(Some(&spec.template));
        // A Deployment's selector prints without the "<none>" placeholder.
        let selector = selector_string(Some(&spec.selector)).unwrap_or_else(|| "<invalid>".into());
        Ok(vec![
            name(&d.metadata),
            format!(
                "{}/{}",
                status.ready_replicas.unwrap_or(0),
                spec.replicas.unwrap_or(1)
            )
            .into(),
            status.updated_replicas.unwrap_or(0).into(),
            status.available_replicas.unwrap_or(0).into(),
            age(&d.metadata, now),
            names.into(),
            images.into(),
            selector.into(),
        ])
    },
};

fn replica_columns(spec: &str, status: &str, selector_of: &str) -> Vec<Column> {
    with_template_columns(
        vec![
            name_column(),
            column("Desired", "integer", doc(spec, "replicas")),
            column("Current", "integer", doc(status, "replicas")),
            column("Ready", "integer", doc(status, "readyReplicas")),
            age_column(),
        ],
        Some(selector_of),
    )
}

static REPLICA_SET: Printer = Printer {
    columns: || {
        replica_columns(
            "io.k8s.api.apps.v1.ReplicaSetSpec",
            "io.k8s.api.apps.v1.ReplicaSetStatus",
            "io.k8s.api.apps.v1.ReplicaSetSpec",
        )
    },
    row: |object, now| {
        let rs: apps::ReplicaSet = decode("ReplicaSet", object)?;
        let spec = rs.spec.unwrap_or_default();
        let status = rs.status.unwrap_or_default();
        let (names, images) = template_containers(spec.template.as_ref());
        Ok(vec![
            name(&rs.metadata),
            spec.replicas.unwrap_or(1).into(),
            status.replicas.into(),
            status.ready_replicas.unwrap_or(0).into(),
            age(&rs.metadata, now),
            names.into(),
            images.into(),
            label_selector(Some(&spec.selector)).into(),
        ])
    },
};

static REPLICATION_CONTROLLER: Printer = Printer {
    columns: || {
        replica_columns(
            "io.k8s.api.core.v1.ReplicationControllerSpec",
            "io.k8s.api.core.v1.ReplicationControllerStatus",
            "io.k8s.api.core.v1.ReplicationControllerSpec",
        )
    },
    row: |object, now| {
        let rc: core::ReplicationController = decode("ReplicationController", object)?;
        let spec = rc.spec.unwrap_or_default();
        let status = rc.status.unwrap_or_default();
        let (names, images) = template_containers(spec.template.as_ref());
        Ok(vec![
            name(&rc.metadata),
            spec.replicas.unwrap_or(1).into(),
            status.replicas.into(),
            status.ready_replicas.unwrap_or(0).into(),
            age(&rc.metadata, now),
            names.into(),
            images.into(),
            format::labels(spec.selector.as_ref()).into(),
        ])
    },
};

static STATEFUL_SET: Printer = Printer {
    columns: || {
        with_template_columns(
            vec![
                name_column(),
                column("Ready", "string", "Number of the pod with ready state"),
                age_column(),
            ],
            None,
        )
    },
    row: |object, now| {
        let sts: apps::StatefulSet = decode("StatefulSet", object)?;
        let spec = sts.spec.unwrap_or_default();
        let status = sts.status.unwrap_or_default();
        let (names, images) = template_containers(Some(&spec.template));
        Ok(vec![
            name(&sts.metadata),
            format!(
                "{}/{}",
                status.ready_replicas.unwrap_or(0),
                spec.replicas.unwrap_or(1)
            )
            .into(),
            age(&sts.metadata, now),
            names.into(),
            images.into(),
        ])
    },
};

static DAEMON_SET: Printer = Printer {
    columns: || {
        let status = "io.k8s.api.apps.v1.DaemonSetStatus";
        with_template_columns(
            vec![
                name_column(),
                column("Desired", "integer", doc(status, "desiredNumberScheduled")),
                column("Current", "integer", doc(status, "currentNumberScheduled")),
                column("Ready", "integer", doc(status, "numberReady")),
                column(
                    "Up-to-date",
                    "integer",
                    doc(status, "updatedNumberScheduled"),
                ),
                column("Available", "integer", doc(status, "numberAvailable")),
                column(
                    "Node Selector",
                    "string",
                    doc("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
                ),
                age_column(),
            ],
            Some("io.k8s.api.apps.v1.DaemonSetSpec"),
        )
    },
    row: |object, now| {
        let ds: apps::DaemonSet = decode("DaemonSet", object)?;
        let spec = ds.spec.unwrap_or_default();
        let status = ds.status.unwrap_or_default();
        let (names, images) = template_containers(Some(&spec.template));
        let node_selector = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref());
        Ok(vec![
            name(&ds.metadata),
            status.desired_number_scheduled.into(),
            status.current_number_scheduled.into(),
            status.number_ready.into(),
            status.updated_number_scheduled.unwrap_or(0).into(),
            status.number_available.unwrap_or(0).into(),
            format::labels(node_selector).into(),
            age(&ds.metadata, now),
            names.into(),
            images.into(),
            label_selector(Some(&spec.selector)).into(),
        ])
    },
};

fn job_condition(status: &batch::JobStatus, type_: &str) -> bool {
    // Upstream looks at the first condition of the type only.
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .is_some_and(|c| c.status == "True")
}

static JOB: Printer = Printer {
    columns: || {
        with_template_columns(
            vec![
                name_column(),
                column("Status", "string", "Status of the job."),
                column(
                    "Completions",
                    "string",
                    doc("io.k8s.api.batch.v1.JobStatus", "succeeded"),
                ),
                column("Duration", "string", "Time required to complete the job."),
                age_column(),
            ],
            Some("io.k8s.api.batch.v1.JobSpec"),
        )
    },
    row: |object, now| {
        let job: batch::Job = decode("Job", object)?;
        let spec = job.spec.unwrap_or_default();
        let status = job.status.unwrap_or_default();
        let succeeded = status.succeeded.unwrap_or(0);
        let completions = match (spec.completions, spec.parallelism.unwrap_or(0)) {
            (Some(c), _) => format!("{succeeded}/{c}"),
            (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
            (None, _) => format!("{succeeded}/1"),
        };
        let duration = match (&status.start_time, &status.completion_time) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration(now.duration_since(start.0)),
            (Some(start), Some(end)) => human_duration(end.0.duration_since(start.0)),
        };
        let state = if job_condition(&status, "Complete") {
            "Complete"
        } else if job_condition(&status, "Failed") {
            "Failed"
        } else if job.metadata.deletion_timestamp.is_some() {
            "Terminating"
        } else if job_condition(&status, "Suspended") {
            "Suspended"
        } else if job_condition(&status, "FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) = template_containers(Some(&spec.template));
        Ok(vec![
            name(&job.metadata),
            state.into(),
            completions.into(),
            duration.into(),
            age(&job.metadata, now),
            names.into(),
            images.into(),
            label_selector(spec.selector.as_ref()).into(),
        ])
    },
};

static CRON_JOB: Printer = Printer {
    columns: || {
        let spec = "io.k8s.api.batch.v1.CronJobSpec";
        let status = "io.k8s.api.batch.v1.CronJobStatus";
        with_template_columns(
            vec![
                name_column(),
                column("Schedule", "string", doc(spec, "schedule")),
                column("Timezone", "string", doc(spec, "timeZone")),
                column("Suspend", "boolean", doc(spec, "suspend")),
                column("Active", "integer", doc(status, "active")),
                column("Last Schedule", "string", doc(status, "lastScheduleTime")),
                age_column(),
            ],
            Some("io.k8s.api.batch.v1.JobSpec"),
        )
    },
    row: |object, now| {
        let cj: batch::CronJob = decode("CronJob", object)?;
        let spec = cj.spec.unwrap_or_default();
        let status = cj.status.unwrap_or_default();
        let last = match status.last_schedule_time.as_ref() {
            Some(t) => since(Some(t), now),
            None => "<none>".to_owned(),
        };
        let job_spec = spec.job_template.spec.unwrap_or_default();
        let (names, images) = template_containers(Some(&job_spec.template));
        Ok(vec![
            name(&cj.metadata),
            spec.schedule.into(),
            spec.time_zone.unwrap_or_else(|| "<none>".into()).into(),
            format::bool_ptr(spec.suspend).into(),
            status.active.map_or(0, |a| a.len()).into(),
            last.into(),
            age(&cj.metadata, now),
            names.into(),
            images.into(),
            label_selector(job_spec.selector.as_ref()).into(),
        ])
    },
};

static CONTROLLER_REVISION: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Controller", "string", "Controller of the object"),
            column(
                "Revision",
                "string",
                doc("io.k8s.api.apps.v1.ControllerRevision", "revision"),
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let cr: apps::ControllerRevision = decode("ControllerRevision", object)?;
        let controller = cr
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| {
                // "statefulset.apps/web": lower-cased Kind.group, then name.
                let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let kind = if group.is_empty() {
                    o.kind.clone()
                } else {
                    format!("{}.{group}", o.kind)
                };
                format!("{}/{}", kind.to_lowercase(), o.name)
            })
            .unwrap_or_else(|| "<none>".into());
        Ok(vec![
            name(&cr.metadata),
            controller.into(),
            cr.revision.into(),
            age(&cr.metadata, now),
        ])
    },
};

static PDB: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column(
                "Min Available",
                "string",
                "The minimum number of pods that must be available.",
            ),
            column(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable.",
            ),
            column(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_column(),
        ]
    },
    row: |object, now| {
        let pdb: policy::PodDisruptionBudget = decode("PodDisruptionBudget", object)?;
        let spec = pdb.spec.unwrap_or_default();
        let or_na = |v: Option<&_>| v.map_or_else(|| "N/A".to_owned(), format::int_or_string);
        Ok(vec![
            name(&pdb.metadata),
            or_na(spec.min_available.as_ref()).into(),
            or_na(spec.max_unavailable.as_ref()).into(),
            pdb.status.map_or(0, |s| s.disruptions_allowed).into(),
            age(&pdb.metadata, now),
        ])
    },
};

static POD_TEMPLATE: Printer = Printer {
    columns: || {
        vec![
            name_column(),
            column("Containers", "string", super::CONTAINERS_DOC),
            column("Images", "string", super::IMAGES_DOC),
            column("Pod Labels", "string", "The labels for the pod template."),
        ]
    },
    row: |object, _now| {
        let pt: core::PodTemplate = decode("PodTemplate", object)?;
        let (names, images) = template_containers(pt.template.as_ref());
        let labels = pt
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref());
        Ok(vec![
            name(&pt.metadata),
            names.into(),
            images.into(),
            format::labels(labels).into(),
        ])
    },
};

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
