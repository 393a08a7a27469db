//! The agent's Prometheus metrics: one registry, and [`Metrics`], the
//! handle the places where things happen count with (a cheap clone, passed
//! as the other shared state is). [`serve`] answers scrapes on a listener
//! of its own, never the session API's.
//!
//! Every label value is a `&'static str` chosen by a `match` here or at
//! the call site, or the CRI runtime's own name and version: the label
//! sets are closed, and no user name, pod name or command line can become
//! a series (which would also make one series per user for Prometheus to
//! keep).

pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::session::{End, Summary};
use crate::sys::ExitStatus;

/// Why a request was refused, as `denials_total` groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialKind {
    /// The caller could not be identified.
    Authn,
    /// The API server (or the unix socket's root rule) refused the right.
    Authz,
    /// The node operator's policy, or the agent's own rules about what may
    /// run, refused the session.
    Policy,
    /// A limit on sessions at once was reached.
    Limit,
}

impl DenialKind {
    pub const ALL: [DenialKind; 4] = [
        DenialKind::Authn,
        DenialKind::Authz,
        DenialKind::Policy,
        DenialKind::Limit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenialKind::Authn => "authn",
            DenialKind::Authz => "authz",
            DenialKind::Policy => "policy",
            DenialKind::Limit => "limit",
        }
    }
}

impl EncodeLabelValue for DenialKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The `end` label of a session: how it ended.
pub fn end_label(end: &End) -> &'static str {
    match end {
        End::Exited(_) => "exited",
        End::ClientGone => "client_gone",
        End::Shutdown => "shutdown",
        End::Expired => "expired",
        End::Oversized => "oversized",
        End::Lost => "lost",
        // Not who: the label set stays closed.
        End::Killed { .. } => "killed",
    }
}

/// The `kind` label of a failed CRI call: its gRPC code, as the gRPC
/// specification spells it, lower case.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndLabels {
    end: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DenialLabels {
    kind: DenialKind,
    rule: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CriLabels {
    call: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    runtime: String,
    runtime_version: String,
}

/// The agent's metrics. Clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

struct Inner {
    registry: Registry,
    active: Gauge,
    started: Counter,
    ended: Family<EndLabels, Counter>,
    duration: Histogram,
    bytes: Family<DirectionLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    cri_errors: Family<CriLabels, Counter>,
    reloads: Counter,
    reload_errors: Counter,
    build: Family<BuildLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut inner = Inner {
            registry: Registry::with_prefix("kubectl_ns"),
            active: Gauge::default(),
            started: Counter::default(),
            ended: Family::default(),
            // From a tenth of a second (a one-shot `ip addr`) to hours (a
            // shell left open).
            duration: Histogram::new(exponential_buckets(0.1, 4.0, 9)),
            bytes: Family::default(),
            denials: Family::default(),
            cri_errors: Family::default(),
            reloads: Counter::default(),
            reload_errors: Counter::default(),
            build: Family::default(),
        };
        let r = &mut inner.registry;
        r.register("sessions_active", "Sessions running now", inner.active.clone());
        r.register("sessions_started", "Sessions started", inner.started.clone());
        r.register(
            "sessions_ended",
            "Sessions ended, by how they ended",
            inner.ended.clone(),
        );
        r.register(
            "session_duration_seconds",
            "How long ended sessions lasted",
            inner.duration.clone(),
        );
        r.register(
            "session_bytes",
            "Bytes of ended sessions' standard streams, by stream",
            inner.bytes.clone(),
        );
        r.register(
            "denials",
            "Requests refused, by kind and by the rule that refused them",
            inner.denials.clone(),
        );
        r.register(
            "cri_errors",
            "Failed calls to the container runtime, by call and gRPC code",
            inner.cri_errors.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy files taken into force",
            inner.reloads.clone(),
        );
        r.register(
            "policy_reload_errors",
            "Policy files that could not be read or parsed",
            inner.reload_errors.clone(),
        );
        // A gauge family rather than an info metric: the runtime may first
        // answer after the agent started, and its labels then change.
        r.register(
            "agent_build_info",
            "The agent's version and the container runtime it talks to (always 1)",
            inner.build.clone(),
        );
        let metrics = Metrics(Arc::new(inner));
        metrics.runtime("", "");
        metrics
    }

    pub fn session_started(&self) {
        self.0.started.inc();
        self.0.active.inc();
    }

    pub fn session_ended(&self, s: &Summary) {
        let m = &self.0;
        m.active.dec();
        m.ended
            .get_or_create(&EndLabels {
                end: end_label(&s.end),
            })
            .inc();
        m.duration.observe(s.duration.as_secs_f64());
        for (direction, n) in [
            ("stdin", s.bytes_in),
            ("stdout", s.bytes_out),
            ("stderr", s.bytes_err),
        ] {
            m.bytes.get_or_create(&DirectionLabels { direction }).inc_by(n);
        }
    }

    /// A session whose tool could not be executed: it started and ended
    /// at once, with the exit code a shell gives, as its audit lines say.
    pub fn session_not_started(&self, code: i32) {
        self.session_started();
        self.session_ended(&Summary {
            end: End::Exited(ExitStatus::Code(code)),
            duration: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            bytes_err: 0,
        });
    }

    /// A refused request. `rule` is one of a few names the caller matches
    /// from its error, never text from the request.
    pub fn denied(&self, kind: DenialKind, rule: &'static str) {
        self.0.denials.get_or_create(&DenialLabels { kind, rule }).inc();
    }

    /// A CRI call (`ContainerStatus`, …) that failed with `status`.
    pub fn cri_error(&self, call: &'static str, status: &tonic::Status) {
        let kind = code_label(status.code());
        self.0.cri_errors.get_or_create(&CriLabels { call, kind }).inc();
    }

    pub fn policy_reloaded(&self) {
        self.0.reloads.inc();
    }

    pub fn policy_reload_failed(&self) {
        self.0.reload_errors.inc();
    }

    /// The container runtime that answered (its `Version` name and
    /// version), in `agent_build_info`.
    pub fn runtime(&self, name: &str, version: &str) {
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            runtime: name.to_owned(),
            runtime_version: version.to_owned(),
        };
        let build = &self.0.build;
        if build.get(&labels).is_none() {
            build.clear();
            build.get_or_create(&labels).set(1);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.0.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// One sample of the exposition: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Parses the OpenMetrics text strictly enough to catch what a scraper
    /// would refuse: `# HELP`/`# TYPE` before a family's samples, quoted
    /// label values, a number on every sample, and `# EOF` last.
    fn parse(text: &str) -> Vec<Sample> {
        let body = text.strip_suffix("# EOF\n").expect("ends with # EOF");
        let mut typed = Vec::new();
        let mut out = Vec::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram", "info"].contains(&kind),
                    "{line}"
                );
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
                None => (series, ""),
            };
            assert!(
                typed.iter().any(|t| name.starts_with(t.as_str())),
                "{name} has no # TYPE before it"
            );
            let labels = labels
                .split_terminator(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    (k.to_owned(), v.expect("a quoted label value").to_owned())
                })
                .collect();
            out.push((name.to_owned(), labels, value));
        }
        out
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
    }

    fn summary(end: End, secs: u64, bytes: (u64, u64, u64)) -> Summary {
        Summary {
            end,
            duration: Duration::from_secs(secs),
            bytes_in: bytes.0,
            bytes_out: bytes.1,
            bytes_err: bytes.2,
        }
    }

    const ENDS: [End; 8] = [
        End::Exited(ExitStatus::Code(0)),
        End::Exited(ExitStatus::Signal(9)),
        End::ClientGone,
        End::Shutdown,
        End::Expired,
        End::Oversized,
        End::Lost,
        End::Killed { by: String::new() },
    ];

    #[test]
    fn the_text_parses_and_its_labels_are_the_closed_sets() {
        let m = Metrics::new();
        for end in ENDS {
            m.session_started();
            m.session_ended(&summary(end, 3, (1, 2, 3)));
        }
        for kind in DenialKind::ALL {
            m.denied(kind, "someRule");
        }
        m.cri_error("ContainerStatus", &tonic::Status::unavailable("down"));
        m.runtime("containerd", "1.6.20");
        let samples = parse(&m.encode().unwrap());
        let allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
            (
                "end",
                vec![
                    "exited",
                    "client_gone",
                    "shutdown",
                    "expired",
                    "oversized",
                    "lost",
                    "killed",
                ],
            ),
            (
                "kind",
                DenialKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .chain(["unavailable"])
                    .collect(),
            ),
            ("direction", vec!["stdin", "stdout", "stderr"]),
        ]);
        for (name, labels, _) in &samples {
            assert!(name.starts_with("kubectl_ns_"), "{name}");
            for (k, v) in labels {
                if let Some(set) = allowed.get(k.as_str()) {
                    assert!(
                        set.contains(&v.as_str()),
                        "{name}: {k}={v:?} is not one of {set:?}"
                    );
                }
            }
        }
        // Every way a session can end has its series, and only those.
        let ends: Vec<_> = samples
            .iter()
            .filter(|(n, ..)| n == "kubectl_ns_sessions_ended_total")
            .map(|(_, l, v)| (l["end"].clone(), *v))
            .collect();
        assert_eq!(ends.len(), 7, "{ends:?}");
        assert!(ends.contains(&("exited".into(), 2.0)), "{ends:?}");
        let names: std::collections::BTreeSet<_> = samples.iter().map(|s| s.0.as_str()).collect();
        for name in [
            "kubectl_ns_sessions_active",
            "kubectl_ns_sessions_started_total",
            "kubectl_ns_session_duration_seconds_count",
            "kubectl_ns_session_bytes_total",
            "kubectl_ns_denials_total",
            "kubectl_ns_cri_errors_total",
            "kubectl_ns_policy_reloads_total",
            "kubectl_ns_policy_reload_errors_total",
            "kubectl_ns_agent_build_info",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
    }

    #[test]
    fn counters_move_with_what_happens() {
        let m = Metrics::new();
        m.session_started();
        m.session_started();
        m.session_ended(&summary(End::Expired, 90, (5, 700, 11)));
        m.session_not_started(127);
        m.denied(DenialKind::Policy, "commands");
        m.denied(DenialKind::Policy, "commands");
        m.cri_error("ListContainers", &tonic::Status::deadline_exceeded("slow"));
        m.policy_reloaded();
        m.policy_reload_failed();
        let s = parse(&m.encode().unwrap());
        let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
        assert_eq!(v("kubectl_ns_sessions_started_total", &[]), Some(3.0));
        assert_eq!(v("kubectl_ns_sessions_active", &[]), Some(1.0));
        assert_eq!(
            v("kubectl_ns_sessions_ended_total", &[("end", "expired")]),
            Some(1.0)
        );
        assert_eq!(
            v("kubectl_ns_sessions_ended_total", &[("end", "exited")]),
            Some(1.0)
        );
        assert_eq!(v("kubectl_ns_session_duration_seconds_count", &[]), Some(2.0));
        assert_eq!(v("kubectl_ns_session_duration_seconds_sum", &[]), Some(90.0));
        // 90 s is past the 25.6 s bucket and within the 102.4 s one.
        assert_eq!(
            v("kubectl_ns_session_duration_seconds_bucket", &[("le", "25.6")]),
            Some(1.0)
        );
        for (direction, n) in [("stdin", 5.0), ("stdout", 700.0), ("stderr", 11.0)] {
            assert_eq!(
                v("kubectl_ns_session_bytes_total", &[("direction", direction)]),
                Some(n)
            );
        }
        assert_eq!(
            v(
                "kubectl_ns_denials_total",
                &[("kind", "policy"), ("rule", "commands")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "kubectl_ns_cri_errors_total",
                &[("call", "ListContainers"), ("kind", "deadline_exceeded")]
            ),
            Some(1.0)
        );
        assert_eq!(v("kubectl_ns_policy_reloads_total", &[]), Some(1.0));
        assert_eq!(v("kubectl_ns_policy_reload_errors_total", &[]), Some(1.0));
    }

    #[test]
    fn the_build_info_names_the_runtime_that_answered() {
        let m = Metrics::new();
        let info = |m: &Metrics| -> Vec<_> {
            parse(&m.encode().unwrap())
                .into_iter()
                .filter(|s| s.0 == "kubectl_ns_agent_build_info")
                .collect()
        };
        let before = info(&m);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(before[0].1["runtime"], "");
        assert_eq!(before[0].1["version"], env!("CARGO_PKG_VERSION"));
        m.runtime("containerd", "1.6.20");
        let after = info(&m);
        assert_eq!(after.len(), 1, "the old runtime's series is gone: {after:?}");
        assert_eq!(
            (
                after[0].1["runtime"].as_str(),
                after[0].1["runtime_version"].as_str(),
                after[0].2
            ),
            ("containerd", "1.6.20", 1.0)
        );
    }
}
