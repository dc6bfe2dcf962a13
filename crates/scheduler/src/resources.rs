//! Resource quantities as the scheduler counts them: millicores, bytes and
//! plain counts, summed per pod the way upstream does.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/api/resource` (parsing)
//! and `k8s.io/component-helpers/resource` (`PodRequests`): a pod asks for
//! the larger of its containers' sum and each init container (plus the
//! sidecars started before it), plus its RuntimeClass overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rkube_machinery::quantity;

/// Upstream's defaults for a container that requests no cpu or memory, used
/// only for scoring so that zero-request pods still spread
/// (`schedutil.DefaultMilliCPURequest`, `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A quantity in thousandths, rounded up as upstream's `MilliValue`; 0
/// when it is malformed.
pub fn milli(q: &Quantity) -> i64 {
    quantity::parse(&q.0).map_or(0, |v| saturate(v.milli_value()))
}

/// A quantity in whole units, rounded up as upstream's `Value`; 0 when it
/// is malformed.
pub fn value(q: &Quantity) -> i64 {
    quantity::parse(&q.0).map_or(0, |v| saturate(v.value()))
}

fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// An amount of each resource the scheduler tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources and hugepages, by name; small, so a vector.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// From a requests/limits/allocatable map. `pods` is left to the caller.
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in map {
            match name.as_str() {
                "cpu" => r.milli_cpu = milli(q),
                "memory" => r.memory = value(q),
                "ephemeral-storage" => r.ephemeral_storage = value(q),
                "pods" => {}
                other if is_scalar(other) => r.scalar.push((other.to_string(), value(q))),
                _ => {}
            }
        }
        r
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let at = match self.scalar.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.scalar.push((name.to_string(), 0));
                self.scalar.len() - 1
            }
        };
        &mut self.scalar[at].1
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (n, v) in &o.scalar {
            *self.scalar_mut(n) += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (n, v) in &o.scalar {
            *self.scalar_mut(n) -= v;
        }
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (n, v) in &o.scalar {
            let mine = self.scalar_mut(n);
            *mine = (*mine).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Extended resources (`example.com/foo`), hugepages and attachable volumes
/// are tracked by name; native resources outside this list are ignored.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn container_requests(c: &Container) -> Resources {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resources::from_map)
        .unwrap_or_default()
}

/// Requests with upstream's non-zero defaults filled in, for scoring.
fn container_non_zero(c: &Container) -> (i64, i64) {
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let cpu = reqs.and_then(|r| r.get("cpu")).map(milli);
    let mem = reqs.and_then(|r| r.get("memory")).map(value);
    (
        cpu.unwrap_or(DEFAULT_MILLI_CPU),
        mem.unwrap_or(DEFAULT_MEMORY),
    )
}

/// What a pod asks of a node: the fit requests and the non-zero (cpu,
/// memory) pair used by the scoring plugins.
pub fn pod_requests(spec: &PodSpec) -> (Resources, (i64, i64)) {
    let mut sum = Resources::default();
    let mut nz = (0i64, 0i64);
    for c in &spec.containers {
        sum.add(&container_requests(c));
        let (cpu, mem) = container_non_zero(c);
        nz.0 += cpu;
        nz.1 += mem;
    }
    // Sidecars (restartable init containers) run beside everything started
    // after them; a plain init container runs alone with the sidecars
    // before it.
    let mut sidecars = Resources::default();
    let mut sidecars_nz = (0i64, 0i64);
    let mut init_max = Resources::default();
    let mut init_max_nz = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let (cpu, mem) = container_non_zero(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars_nz.0 += cpu;
            sidecars_nz.1 += mem;
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.max_with(&during);
            init_max_nz.0 = init_max_nz.0.max(sidecars_nz.0 + cpu);
            init_max_nz.1 = init_max_nz.1.max(sidecars_nz.1 + mem);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    nz.0 = (nz.0 + sidecars_nz.0).max(init_max_nz.0);
    nz.1 = (nz.1 + sidecars_nz.1).max(init_max_nz.1);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_map(overhead);
        sum.add(&o);
        nz.0 += o.milli_cpu;
        nz.1 += o.memory;
    }
    (sum, nz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn container(cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), q(cpu));
        }
        if !mem.is_empty() {
            req.insert("memory".to_string(), q(mem));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(milli(&q("100m")), 100);
        assert_eq!(milli(&q("1.5")), 1500);
        assert_eq!(milli(&q("2")), 2000);
        assert_eq!(value(&q("1Gi")), 1 << 30);
        assert_eq!(value(&q("500M")), 500_000_000);
        assert_eq!(value(&q("2e3")), 2000);
        assert_eq!(value(&q("1k")), 1000);
        assert_eq!(value(&q("abc")), 0);
        assert_eq!(value(&q("1Xi")), 0);
        assert_eq!(milli(&q("1u")), 1, "rounds up");
    }

    #[test]
    fn init_containers_and_overhead() {
        let mut spec = PodSpec {
            containers: vec![container("100m", "100Mi"), container("200m", "")],
            init_containers: Some(vec![container("1", "50Mi")]),
            ..Default::default()
        };
        let (r, nz) = pod_requests(&spec);
        assert_eq!(r.milli_cpu, 1000, "init container dominates cpu");
        assert_eq!(r.memory, 100 << 20, "containers dominate memory");
        assert_eq!(nz, (1000, (100 << 20) + DEFAULT_MEMORY));

        spec.overhead = Some([("cpu".to_string(), q("250m"))].into());
        assert_eq!(pod_requests(&spec).0.milli_cpu, 1250);
    }

    #[test]
    fn sidecars_add_to_everything_after_them() {
        let mut sidecar = container("300m", "");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("100m", "")],
            init_containers: Some(vec![sidecar, container("500m", "")]),
            ..Default::default()
        };
        // 300m sidecar + 500m init = 800m during init; 400m afterwards.
        assert_eq!(pod_requests(&spec).0.milli_cpu, 800);
    }

    #[test]
    fn extended_resources() {
        let map: BTreeMap<String, Quantity> = [
            ("example.com/gpu".to_string(), q("2")),
            ("pods".to_string(), q("110")),
            ("hugepages-2Mi".to_string(), q("4Mi")),
        ]
        .into();
        let r = Resources::from_map(&map);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        let mut s = r.clone();
        s.add(&r);
        s.sub(&r);
        assert_eq!(s, r);
    }
}
